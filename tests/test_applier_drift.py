"""Source DDL while streaming: a new column is added on the replica; a dropped or retyped one pauses its table."""

from __future__ import annotations

from pathlib import Path

import psycopg

from pg2edge.pipeline import state
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sources.cdc import CdcSource
from pg2edge.pipeline.sources.replication import ReplicationStream, create_slot
from tests.support.cdc import pg_rows, sqlite_rows, sync


def run(dsn: str, *stmts: str) -> None:
    with psycopg.connect(dsn) as conn:
        for stmt in stmts:
            conn.execute(stmt)


def test_added_column_flows_and_dropped_or_retyped_column_pauses_only_its_table(pg_dsn: str, tmp_path: Path) -> None:
    run(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, x text)", "CREATE TABLE b (id int PRIMARY KEY, y text)",
        "CREATE TABLE c (id int PRIMARY KEY, n int)", "CREATE PUBLICATION p FOR ALL TABLES")
    start = create_slot(pg_dsn, "s")
    db = open_replica(tmp_path / "r.db")
    for t, col in (("a", "x"), ("b", "y"), ("c", "n")):
        db.execute(f'CREATE TABLE "{t}" (id TEXT PRIMARY KEY, "{col}" TEXT)')
    mappings = {("public", t): TableMapping(target=t, column_type=lambda col: "TEXT") for t in "abc"}
    applier = Applier(db, mappings)
    with ReplicationStream(pg_dsn, slot="s", publications=["p"], start_lsn=start) as stream:
        src = CdcSource(stream)
        run(pg_dsn, "INSERT INTO a VALUES (1, 'one')", "INSERT INTO b VALUES (1, 'uno')", "INSERT INTO c VALUES (1, 1)")
        sync(src, applier, pg_dsn)
        assert {name: ts.columns for name, ts in state.read_tables(db).items()}["public.b"] == [
            ["id", 23, -1], ["y", 25, -1]]

        run(pg_dsn, "ALTER TABLE a ADD COLUMN z text", "INSERT INTO a VALUES (2, 'two', 'zwei')")
        run(pg_dsn, "ALTER TABLE b DROP COLUMN y", "INSERT INTO b VALUES (2)")
        run(pg_dsn, "ALTER TABLE c ALTER COLUMN n TYPE text", "UPDATE c SET n = 'eins'")
        run(pg_dsn, "INSERT INTO a VALUES (3, 'three', 'drei')")
        results = sync(src, applier, pg_dsn)

    findings = {(f.code, f.object) for r in results for f in r.findings}
    assert findings >= {("column-added", "public.a.z"), ("column-dropped", "public.b.y"),
                        ("column-retyped", "public.c.n")}
    assert [r[1] for r in db.execute('PRAGMA table_info("a")').fetchall()] == ["id", "x", "z"]
    assert db.execute('SELECT type FROM pragma_table_info(\'a\') WHERE name = \'z\'').fetchone() == ("TEXT",)
    assert sqlite_rows(db, "a", ["id", "x", "z"]) == pg_rows(pg_dsn, "a", ["id", "x", "z"])
    # b and c are paused: their later changes are not applied, and the pause is recorded
    assert sqlite_rows(db, "b", ["id"]) == [("1",)]
    assert sqlite_rows(db, "c", ["id", "n"]) == [("1", "1")]
    tables = state.read_tables(db)
    assert tables["public.b"].paused and "public.b.y" in (tables["public.b"].pause_reason or "")
    assert tables["public.c"].paused and "public.c.n" in (tables["public.c"].pause_reason or "")
    assert not tables["public.a"].paused
    assert sum(r.paused_events for r in results) == 2
    db.close()
