"""Source DDL through Kafka: the publisher carries each schema change inside its transaction's records, and a
replica with no source access applies it at its position (real Tansu broker, PostgreSQL, SQLite)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.sinks.sqlite import open_replica
from tests.support.cdc import pg_rows, sqlite_rows
from tests.support.schema import one, run_sql, schema_differences

pytestmark = pytest.mark.kafka
QUIET = {"say": lambda s: None}


def _topic(dsn: str, prefix: str) -> str:
    with psycopg.connect(dsn) as conn:
        return records.topic_name(prefix, conn.info.dbname)


@pytest.mark.parametrize("envelope", ["batch", "row"])
def test_ddl_travels_through_the_topic_and_is_applied_at_its_position(pg_dsn: str, kafka_bootstrap: str,
                                                                     tmp_path: Path, envelope: str) -> None:
    run_sql(pg_dsn, "CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO actor SELECT g, 'a' || g FROM generate_series(1, 200) g",
            "CREATE TABLE category (id int PRIMARY KEY, name text)",
            "INSERT INTO category SELECT g, 'c' || g FROM generate_series(1, 16) g",
            "CREATE TABLE film (id int PRIMARY KEY, title text, rating int)",
            "INSERT INTO film SELECT g, 'f' || g, g % 5 FROM generate_series(1, 50) g",
            "CREATE TABLE payment (id int PRIMARY KEY, amount int)",
            "INSERT INTO payment SELECT g, g FROM generate_series(1, 20) g")
    prefix = f"ddl{envelope}"
    publish = dict(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix=prefix, state_path=tmp_path / "pub.db",
                   until_caught_up=True, envelope=envelope, **QUIET)
    replica = dict(bootstrap=kafka_bootstrap, target=tmp_path / "r.db", topic=_topic(pg_dsn, prefix),
                   until_caught_up=True, idle_seconds=1.0, **QUIET)
    run_publisher(**publish)  # type: ignore[arg-type]
    run_kafka_replica(**replica)  # type: ignore[arg-type]
    run_sql(pg_dsn, "ALTER TABLE actor ADD COLUMN nick text NOT NULL DEFAULT 'none'",
            "INSERT INTO actor (id, name) VALUES (201, 'new')",
            "BEGIN; UPDATE category SET name = 'before' WHERE id = 1; ALTER TABLE category RENAME COLUMN name TO "
            "title; UPDATE category SET title = 'after' WHERE id = 2; COMMIT",
            "CREATE INDEX film_title_idx ON film (title)",  # no row change: a transaction of DDL alone
            "ALTER TABLE film DROP COLUMN rating",
            "INSERT INTO film VALUES (51, 'f51')",
            "ALTER TABLE payment ALTER COLUMN amount TYPE text USING amount::text || ' EUR'",
            "INSERT INTO payment VALUES (99, '5 EUR')",
            "INSERT INTO category VALUES (17, 'c17')")
    run_publisher(**publish)  # type: ignore[arg-type]
    report = run_kafka_replica(**replica)  # type: ignore[arg-type]
    db = open_replica(tmp_path / "r.db")
    try:
        assert one(db, "SELECT count(*) FROM actor WHERE nick = 'none'") == 201  # 200 old rows + 1 new
        assert sqlite_rows(db, "actor", ["id", "name", "nick"]) == sorted(
            (int(a), b, c) for a, b, c in pg_rows(pg_dsn, "actor", ["id", "name", "nick"]))
        assert [r[1] for r in db.execute("PRAGMA table_info(category)")] == ["id", "title"]
        assert sqlite_rows(db, "category", ["id", "title"]) == sorted(
            (int(a), b) for a, b in pg_rows(pg_dsn, "category", ["id", "title"]))
        assert one(db, "SELECT title FROM category WHERE id = 2") == "after"
        assert [r[1] for r in db.execute("PRAGMA table_info(film)")] == ["id", "title"]
        assert one(db, "SELECT count(*) FROM film") == 51
        assert schema_differences(pg_dsn, db, ["actor", "category", "film"]) == []
        tables = state.read_tables(db)
        assert tables["public.payment"].paused, tables["public.payment"]
        assert not any(tables[t].paused for t in ("public.actor", "public.category", "public.film"))
        assert db.execute("SELECT count(*) FROM _pg2edge_queue").fetchone() == (0,)
    finally:
        db.close()
    assert any("ddl-needs-recopy" in f and "public.payment" in f for f in report.findings), report.findings
    assert any("column-renamed" in f and "category.title" in f for f in report.findings), report.findings
