"""Source DDL while syncing into real sqld and real D1 (workerd): applied at its position in the same atomic
batch as the rows and the position, or the table paused by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.pipeline.remote.connection import RemoteConnection
from pg2edge.pipeline.remote.http import RetryPolicy as HttpRetry
from pg2edge.validators import validate
from tests.support.d1 import LocalD1, wrangler_binary
from tests.support.edge import SqldServer, TursoServer
from tests.support.rows import run_sql
from tests.support.schema import schema_differences


def _quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))


class Target:
    """One remote target: how to sync into it and how to read it back."""

    def __init__(self, kind: str, url: str, sync: Callable[[str], Any], reader: Callable[[], Any]) -> None:
        self.kind, self.url, self.sync, self.reader = kind, url, sync, reader


@pytest.fixture(params=["sqld", "tursodb", "d1"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    if request.param in ("sqld", "tursodb"):
        server = SqldServer(tmp_path / "sqld") if request.param == "sqld" else TursoServer(tmp_path / "tursodb")
        server.start()
        try:
            yield Target(request.param, server.url,
                         lambda dsn: run_sync(dsn=dsn, target=server.url, until_caught_up=True, say=_quiet),
                         lambda: RemoteConnection(parse_target(server.url, env={})))
        finally:
            server.stop()
        return
    from pg2edge.pipeline.d1.daemon import run_sync_d1

    if wrangler_binary() is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    local = LocalD1(tmp_path / "d1").start()
    monkeypatch.setenv("PG2EDGE_TARGET_AUTH_TOKEN", local.token)

    def read_d1() -> apsw.Connection:
        conn = apsw.Connection(str(local.sqlite_file()), flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(5000)
        return conn

    try:
        yield Target("d1", local.url, lambda dsn: run_sync_d1(dsn=dsn, target=local.url, until_caught_up=True, say=_quiet,
                                                        http=HttpRetry(retry_for=60)), read_d1)
    finally:
        local.stop()


def _columns(db: Any, table: str) -> list[str]:
    return [str(r[1]) for r in db.execute(f'PRAGMA table_info("{table}")').fetchall()]


def test_ddl_is_followed_in_sqld_and_d1_at_its_position(pg_dsn: str, target: Target) -> None:
    run_sql(pg_dsn, "CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO actor SELECT g, 'a' || g FROM generate_series(1, 200) g",
            "CREATE TABLE category (id int PRIMARY KEY, name text)",
            "INSERT INTO category SELECT g, 'c' || g FROM generate_series(1, 16) g",
            "CREATE TABLE film (id int PRIMARY KEY, title text, rating int)",
            "INSERT INTO film SELECT g, 'f' || g, g % 5 FROM generate_series(1, 50) g",
            "CREATE TABLE payment (id int PRIMARY KEY, amount int)",
            "INSERT INTO payment SELECT g, g FROM generate_series(1, 20) g")
    target.sync(pg_dsn)
    run_sql(pg_dsn, "ALTER TABLE actor ADD COLUMN nick text NOT NULL DEFAULT 'none'",
            "INSERT INTO actor (id, name) VALUES (201, 'new')",
            "UPDATE actor SET nick = 'x' WHERE id = 7",
            # the DDL and the rows around it in one source transaction: one batch, in order
            "BEGIN; UPDATE category SET name = 'before' WHERE id = 1; ALTER TABLE category RENAME COLUMN name TO "
            "title; UPDATE category SET title = 'after' WHERE id = 2; COMMIT",
            "UPDATE category SET title = 'renamed ' || id WHERE id BETWEEN 3 AND 8",
            "CREATE INDEX film_title_idx ON film (title)",
            "ALTER TABLE film DROP COLUMN rating",
            "INSERT INTO film VALUES (51, 'f51')",
            "ALTER TABLE payment ALTER COLUMN amount TYPE text USING amount::text || ' EUR'",
            "INSERT INTO payment VALUES (99, '5 EUR')",
            "INSERT INTO category VALUES (17, 'c17')")
    report = target.sync(pg_dsn)
    findings = report.findings
    db = target.reader()
    try:
        assert db.execute("SELECT count(*) FROM actor WHERE nick = 'none'").fetchone()[0] == 200
        assert db.execute("SELECT nick FROM actor WHERE id = 7").fetchone()[0] == "x"
        assert _columns(db, "category") == ["id", "title"]
        assert [tuple(r) for r in db.execute("SELECT id, title FROM category WHERE id <= 3 ORDER BY id")] == [
            (1, "before"), (2, "after"), (3, "renamed 3")]
        assert _columns(db, "film") == ["id", "title"]
        assert db.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'film_title_idx'"
                          ).fetchone()[0] == 1
        if target.kind != "tursodb":  # tursodb stores its own text of a CREATE TABLE (one line, its quoting)
            assert schema_differences(pg_dsn, db, ["actor", "category", "film"]) == []
        tables = state.read_tables(db)
        assert tables["public.payment"].paused and "re-copied" in (tables["public.payment"].pause_reason or "")
        assert not any(tables[t].paused for t in ("public.actor", "public.category", "public.film"))
        assert db.execute("SELECT count(*) FROM payment WHERE id = 99").fetchone()[0] == 0  # paused: not applied
        pos = state.read_position(db)
        assert pos is not None and report.position is not None and pos.commit_lsn == report.position.commit_lsn
    finally:
        db.close()
    assert any("ddl-needs-recopy" in f and "public.payment" in f for f in findings), findings
    assert any("column-renamed" in f and "category.title" in f for f in findings), findings
    if target.kind != "d1":  # validate reads sqld and tursodb through the one Hrana client
        result = validate(pg_dsn, parse_target(target.url, env={}), tables="actor,category,film", mode="full",
                          timeout=30)
        assert result.clean, result.as_dict()
    again = target.sync(pg_dsn)
    assert again.transactions == 0  # nothing applied twice


def test_ddl_the_remote_refuses_pauses_that_table_by_name(pg_dsn: str, sqld: SqldServer, tmp_path: Path) -> None:
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, x int)", "CREATE TABLE b (id int PRIMARY KEY, y text)",
            "INSERT INTO a VALUES (1, 1), (2, 2)", "INSERT INTO b VALUES (1, 'one')")
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    with HranaClient(parse_target(sqld.url, env={})) as client:  # the remote drifted: a row the source lacks
        client.execute("INSERT INTO a VALUES (3, 1)")
    run_sql(pg_dsn, "ALTER TABLE a ADD CONSTRAINT a_x_key UNIQUE (x)", "INSERT INTO a VALUES (4, 4)",
            "INSERT INTO b VALUES (2, 'two')")
    report = run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    assert any("ddl-not-followed" in f and "public.a" in f and "refused" in f for f in report.findings), \
        report.findings
    db = RemoteConnection(parse_target(sqld.url, env={}))
    try:
        tables = state.read_tables(db)  # type: ignore[arg-type]
        assert tables["public.a"].paused and not tables["public.b"].paused
        assert db.execute("SELECT count(*) FROM a WHERE id = 4").fetchone() == (0,)
        assert [tuple(r) for r in db.execute("SELECT id, y FROM b ORDER BY id")] == [(1, "one"), (2, "two")]
        assert "UNIQUE" not in db.execute("SELECT sql FROM sqlite_schema WHERE name = 'a'").fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("target", ["d1"], indirect=True)
def test_ddl_d1_refuses_pauses_that_table_by_name(pg_dsn: str, target: Target) -> None:
    """The same as above through D1's batch (its statements are re-numbered when rows are merged)."""
    from pg2edge.pipeline.d1.client import D1Client

    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, x int)", "CREATE TABLE b (id int PRIMARY KEY, y text)",
            "INSERT INTO a VALUES (1, 1), (2, 2)", "INSERT INTO b VALUES (1, 'one')")
    target.sync(pg_dsn)
    client = D1Client(parse_target(target.url))
    try:
        client.batch([("INSERT INTO a VALUES (3, 1)", [])])  # D1 drifted: a row the source lacks
    finally:
        client.close()
    run_sql(pg_dsn, "INSERT INTO b SELECT g, 'v' || g FROM generate_series(2, 40) g",
            "BEGIN; INSERT INTO b VALUES (41, 'same txn'); ALTER TABLE a ADD CONSTRAINT a_x_key UNIQUE (x); "
            "INSERT INTO a VALUES (4, 4); COMMIT", "INSERT INTO b VALUES (42, 'after')")
    report = target.sync(pg_dsn)
    assert any("ddl-not-followed" in f and "public.a" in f and "refused" in f for f in report.findings), \
        report.findings
    db = target.reader()
    try:
        tables = state.read_tables(db)
        assert tables["public.a"].paused and not tables["public.b"].paused
        assert db.execute("SELECT count(*) FROM a WHERE id = 4").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM b").fetchone()[0] == 42
    finally:
        db.close()
