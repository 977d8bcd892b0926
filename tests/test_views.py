"""Views on the replica: created in dependency order by the query translator, same rows as PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import apsw
import psycopg
import pytest

from pg2edge.pipeline.exports import export_d1, export_turso
from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.ddl import plan_ddl
from pg2edge.translators.introspect import introspect
from pg2edge.translators.quoting import quote_ident
from tests.support.corpus import normalize, rows_equal

CREATED = ["film_catalog", "rental_details", "customer_value", "gold_customers", "store_report"]


@pytest.fixture(scope="module")
def rental_replica(rental_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("views") / "rental.db"
    said: list[str] = []
    run_snapshot(dsn=rental_dsn, target=path, say=said.append)
    return path, said


def _views(path: Path) -> list[str]:
    db = apsw.Connection(str(path))
    return [n for (n,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'view' ORDER BY rowid")]


def test_plan_orders_views_after_what_they_read(rental_dsn: str) -> None:
    with psycopg.connect(rental_dsn) as conn:
        schema = introspect(conn)
    plan = plan_ddl(schema)
    views = [s for s in plan.statements if s.startswith("CREATE VIEW")]
    order = [s.split('"')[1] for s in views]
    assert sorted(order) == sorted(CREATED)
    for before, after in (("film_catalog", "rental_details"), ("rental_details", "store_report"),
                          ("customer_value", "gold_customers")):
        assert order.index(before) < order.index(after)
    assert plan.statements.index(views[0]) > max(i for i, s in enumerate(plan.statements)
                                                 if s.startswith(("CREATE TABLE", "CREATE INDEX")))
    named = {f.object: f for f in plan.findings if f.code in ("view-not-created", "materialized-view-not-created")}
    assert set(named) == {"public.lettered_titles", "public.monthly_revenue"}
    assert "unsupported_operator" in named["public.lettered_titles"].message
    assert named["public.monthly_revenue"].code == "materialized-view-not-created"


def test_snapshot_creates_the_views_and_each_returns_what_postgres_returns(
        rental_dsn: str, rental_replica: tuple[Path, list[str]]) -> None:
    path, said = rental_replica
    assert _views(path) == [v for v in _views(path) if v in CREATED] and sorted(_views(path)) == sorted(CREATED)
    assert any("view-not-created public.lettered_titles" in line for line in said)
    lite = apsw.Connection(str(path))
    with psycopg.connect(rental_dsn, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        for view in CREATED:
            sql = f"SELECT * FROM {quote_ident(view)}"
            pg_cur = pg.execute(sql)
            pg_names = [d.name for d in pg_cur.description or ()]
            pg_rows = [tuple(normalize(v) for v in row) for row in pg_cur.fetchall()]
            lite_cur = lite.execute(sql)
            lite_names = [d[0] for d in lite_cur.description]
            lite_rows = [tuple(normalize(v) for v in row) for row in lite_cur.fetchall()]
            assert lite_names == pg_names, view
            assert pg_rows, view
            assert rows_equal(pg_rows, lite_rows, ordered=False), (view, pg_rows[:3], lite_rows[:3])


def test_interval_view_column_is_the_codec_duration(rental_replica: tuple[Path, list[str]]) -> None:
    path, _ = rental_replica
    lite = apsw.Connection(str(path))
    kept = {k for (k,) in lite.execute("SELECT kept FROM rental_details WHERE kept IS NOT NULL")}
    assert kept and all(k.startswith("P") for k in kept)
    assert any("." in k for k in kept)  # microseconds survive


def test_exports_carry_the_views(rental_replica: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, _ = rental_replica
    turso = tmp_path / "turso.db"
    export_turso(path, turso)
    assert sorted(_views(turso)) == sorted(CREATED)
    exported = apsw.Connection(str(turso))
    original = apsw.Connection(str(path))
    for view in CREATED:
        sql = f"SELECT * FROM {quote_ident(view)}"
        assert sorted(map(repr, exported.execute(sql))) == sorted(map(repr, original.execute(sql))), view
    script = tmp_path / "d1.sql"
    export_d1(path, script)
    loaded = apsw.Connection(str(tmp_path / "d1.db"))
    loaded.execute(script.read_text())
    assert sorted(_views(tmp_path / "d1.db")) == sorted(CREATED)
    assert loaded.execute("SELECT count(*) FROM store_report").fetchone() == \
        original.execute("SELECT count(*) FROM store_report").fetchone()
