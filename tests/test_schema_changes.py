"""Source DDL while syncing: followed exactly at its position (event triggers), or named and paused."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.ddl_capture import EVENT_TRIGGERS, capture_mode
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.validators.run import validate
from tests.support.cdc import pg_rows, sqlite_rows
from tests.support.schema import one, run_sql, schema_differences


def catch_up(dsn: str, target: Path, **kw: object) -> list[str]:
    report = run_sync(dsn=dsn, target=target, until_caught_up=True, heartbeat_interval=0.2, say=lambda _m: None,
                      **kw)  # type: ignore[arg-type]
    return report.findings


def test_the_three_measured_cases_are_followed_exactly(pg_dsn: str, tmp_path: Path) -> None:
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE actor (id int PRIMARY KEY, name text NOT NULL)",
            "INSERT INTO actor SELECT g, 'a' || g FROM generate_series(1, 200) g",
            "CREATE TABLE category (id int PRIMARY KEY, name text)",
            "INSERT INTO category SELECT g, 'c' || g FROM generate_series(1, 16) g",
            "CREATE TABLE film (id int PRIMARY KEY, title text, rating int)",
            "INSERT INTO film SELECT g, 'f' || g, g % 5 FROM generate_series(1, 50) g")
    catch_up(pg_dsn, target)
    db = open_replica(target)
    assert capture_mode(db) == EVENT_TRIGGERS

    run_sql(pg_dsn, "ALTER TABLE actor ADD COLUMN nick text NOT NULL DEFAULT 'none'",
            "INSERT INTO actor (id, name) VALUES (201, 'new')",
            "UPDATE actor SET nick = 'x' WHERE id = 7",
            "ALTER TABLE category RENAME COLUMN name TO title",
            "UPDATE category SET title = 'renamed ' || id WHERE id <= 8",
            "CREATE INDEX film_title_idx ON film (title)",
            "CREATE UNIQUE INDEX film_rating_title ON film (rating DESC, title) WHERE rating > 1",
            "UPDATE film SET rating = 4 WHERE id = 1")
    findings = catch_up(pg_dsn, target)

    assert one(db, "SELECT count(*) FROM actor WHERE nick = 'none'") == 200
    assert sqlite_rows(db, "actor", ["id", "name", "nick"]) == sorted(
        (int(a), b, c) for a, b, c in pg_rows(pg_dsn, "actor", ["id", "name", "nick"]))
    assert [r[1] for r in db.execute("PRAGMA table_info(category)")] == ["id", "title"]
    assert one(db, "SELECT title FROM category WHERE id = 3") == "renamed 3"
    assert one(db, "SELECT title FROM category WHERE id = 12") == "c12"
    assert one(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 'film_title_idx'") == 1
    assert db.execute("SELECT count(*) FROM _pg2edge_queue").fetchone() == (0,)
    assert not any(ts.paused for ts in state.read_tables(db).values()), state.read_tables(db)
    assert schema_differences(pg_dsn, db, ["actor", "category", "film"]) == []
    assert any("column-renamed" in f and "category.title" in f for f in findings), findings
    report = validate(pg_dsn, target, mode="full", timeout=30)
    assert report.clean, report.as_dict()
    db.close()


def test_ddl_sqlite_cannot_follow_is_named_and_pauses_only_that_table(pg_dsn: str, tmp_path: Path) -> None:
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, x int)", "CREATE TABLE b (id int PRIMARY KEY, y text)",
            "INSERT INTO a VALUES (1, 1), (2, 2)", "INSERT INTO b VALUES (1, 'one')")
    catch_up(pg_dsn, target)
    # a's rows violate the CHECK on the replica only if it were applied wrongly; make SQLite refuse:
    # the replica gets a row the source does not have, so the rebuild with the new UNIQUE fails
    db = open_replica(target)
    with db:
        db.execute("INSERT INTO a VALUES (3, 1)")
    run_sql(pg_dsn, "ALTER TABLE a ADD CONSTRAINT a_x_key UNIQUE (x)", "INSERT INTO a VALUES (4, 4)",
            "INSERT INTO b VALUES (2, 'two')", "CREATE INDEX b_y_gin ON b USING hash (y)",
            "CREATE INDEX b_y_brin ON b USING brin (id)", "INSERT INTO b VALUES (3, 'three')")
    findings = catch_up(pg_dsn, target)
    tables = state.read_tables(db)
    assert tables["public.a"].paused, tables["public.a"]
    assert any("ddl-not-followed" in f and "public.a" in f for f in findings), findings
    assert any("index-method" in f and "b_y_brin" in f for f in findings), findings
    assert not tables["public.b"].paused
    assert sqlite_rows(db, "b", ["id", "y"]) == [(1, "one"), (2, "two"), (3, "three")]
    assert one(db, "SELECT count(*) FROM a WHERE id = 4") == 0  # paused: not applied
    db.close()


def test_kill_between_ddl_and_next_change_applies_the_ddl_once(pg_dsn: str, tmp_path: Path) -> None:
    import multiprocessing as mp
    import os
    import signal
    import time

    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g")
    catch_up(pg_dsn, target)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_sync_forever, args=(pg_dsn, str(target)))
    proc.start()
    try:
        run_sql(pg_dsn, "ALTER TABLE t ADD COLUMN w int NOT NULL DEFAULT 7")
        db = open_replica(target)
        deadline = time.monotonic() + 30
        while "w" not in [r[1] for r in db.execute("PRAGMA table_info(t)")]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join()
        run_sql(pg_dsn, "UPDATE t SET w = 8 WHERE id = 1", "ALTER TABLE t RENAME COLUMN v TO vv",
                "INSERT INTO t VALUES (51, 'n', 9)")
        findings = catch_up(pg_dsn, target)
        assert not any("ddl-not-followed" in f for f in findings), findings
        assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["id", "vv", "w"]
        assert sqlite_rows(db, "t", ["id", "vv", "w"]) == sorted(
            (int(a), b, int(c)) for a, b, c in pg_rows(pg_dsn, "t", ["id", "vv", "w"]))
        assert schema_differences(pg_dsn, db, ["t"]) == []
        db.close()
    finally:
        if proc.is_alive():
            proc.kill()


def _sync_forever(dsn: str, target: str) -> None:
    run_sync(dsn=dsn, target=target, heartbeat_interval=0.2, say=lambda _m: None)


def test_capture_is_a_source_change_that_teardown_removes(pg_dsn: str, tmp_path: Path) -> None:
    from pg2edge.pipeline.teardown import teardown_replica

    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    catch_up(pg_dsn, target)
    with psycopg.connect(pg_dsn) as conn:
        assert len(conn.execute("SELECT evtname FROM pg_event_trigger").fetchall()) == 2
    db = open_replica(target)
    assert any("event triggers" in c.description for c in state.read_source_changes(db))
    db.close()
    done = teardown_replica(dsn=pg_dsn, target=target)
    assert any("event triggers" in d for d in done)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT evtname FROM pg_event_trigger").fetchall() == []
        assert conn.execute("SELECT proname FROM pg_proc WHERE proname LIKE '%capture'").fetchall() == []


MIGRATION = [
    "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new'",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "CREATE INDEX orders_status_idx ON orders (status)",
    "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'pending'",
    "BEGIN; LOCK TABLE orders; UPDATE orders SET remark = 'r' WHERE remark IS NULL; "
    "ALTER TABLE orders ALTER COLUMN remark SET NOT NULL; COMMIT",
    "ALTER TABLE orders ALTER COLUMN remark DROP NOT NULL",
    "ALTER TABLE orders ALTER COLUMN qty TYPE bigint",
    "ALTER TABLE orders ADD CONSTRAINT orders_qty_check CHECK (qty >= 0)",
    "ALTER TABLE orders DROP CONSTRAINT orders_qty_check",
    "ALTER TABLE orders DROP COLUMN remark",
    "ALTER TABLE customers RENAME TO clients",
    "CREATE UNIQUE INDEX clients_email_key ON clients (email)",
    "DROP INDEX orders_status_idx",
    "ALTER TABLE clients ADD COLUMN score int",
    "ALTER TABLE clients ALTER COLUMN name TYPE varchar(200)",
    "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT",
    "ALTER TABLE orders ADD CONSTRAINT orders_id_status_key UNIQUE (id, status)",
    "ALTER TABLE orders ADD COLUMN created timestamptz NOT NULL DEFAULT now()",
    "CREATE INDEX orders_created_idx ON orders (created DESC) WHERE status <> 'done'",
    "ALTER TABLE clients ADD COLUMN token text DEFAULT md5(random()::text)",  # volatile: re-copied
    "ALTER TABLE orders ALTER COLUMN qty TYPE numeric(12,2) USING qty + 0.5",  # USING: re-copied under load
    "TRUNCATE scratch",
    "DROP TABLE scratch",
]


@pytest.mark.slow
def test_migration_under_load_stays_exact_after_every_statement(pg_dsn: str, tmp_path: Path) -> None:
    """>= 15 DDL statements interleaved with a continuous write load; after each one the replica validates
    clean in full mode and its schema is the translation of the source's."""
    import multiprocessing as mp
    import random
    import threading
    import time

    from pg2edge.pipeline.resync import pending
    from pg2edge.pipeline.status import wait_for_lsn

    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text)",
            "INSERT INTO customers SELECT g, 'c' || g, 'c' || g || '@x' FROM generate_series(1, 300) g",
            "CREATE TABLE orders (id int PRIMARY KEY, customer int, qty int NOT NULL, note text)",
            "INSERT INTO orders SELECT g, g % 300 + 1, g % 7, CASE WHEN g % 3 = 0 THEN 'n' || g END "
            "FROM generate_series(1, 2000) g",
            "CREATE TABLE scratch (id int PRIMARY KEY, v text)", "INSERT INTO scratch VALUES (1, 'a')")
    catch_up(pg_dsn, target)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_sync_forever, args=(pg_dsn, str(target)))
    proc.start()
    stop = threading.Event()
    writes = [0]

    def load() -> None:
        rnd = random.Random(7)
        next_id = 10_000
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    next_id += 1
                    conn.execute("INSERT INTO orders (id, customer, qty) VALUES (%s, 1, 1)", (next_id,))
                    conn.execute("UPDATE orders SET id = id WHERE id = %s", (rnd.randint(1, 2000),))
                    conn.execute("DELETE FROM orders WHERE id = %s", (rnd.randint(1, 2000),))
                    writes[0] += 3
                except psycopg.Error:
                    pass  # the source refused it (a constraint mid-migration): no change to follow
                stop.wait(0.005)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    db = open_replica(target)
    try:
        for stmt in MIGRATION:
            run_sql(pg_dsn, stmt)
            with psycopg.connect(pg_dsn) as conn:
                lsn = str(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
            wait_for_lsn(target, lsn, timeout=60)  # the statement is applied (and a re-copy requested)
            deadline = time.monotonic() + 120
            while pending(db) or not state.read_position(db):  # a re-copy runs in the daemon's child process
                assert time.monotonic() < deadline, (stmt, pending(db))
                time.sleep(0.2)
            report = validate(pg_dsn, target, mode="full", timeout=60)
            assert report.clean, (stmt, report.as_dict())
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' "
                                               "AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'")]
            assert schema_differences(pg_dsn, db, tables) == [], stmt
            assert not any(ts.paused for ts in state.read_tables(db).values()), (stmt, state.read_tables(db))
        assert writes[0] > 100
        assert one(db, "SELECT count(*) FROM _pg2edge_queue") == 0
        assert sorted(tables) == ["clients", "orders"]
    finally:
        stop.set()
        loader.join()
        proc.kill()
        proc.join()
        db.close()


@pytest.mark.slow
def test_type_change_with_using_recopies_that_table_while_the_other_streams(pg_dsn: str, tmp_path: Path) -> None:
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE m (id int PRIMARY KEY, n int, label text)",
            "INSERT INTO m SELECT g, g, 'l' || g FROM generate_series(1, 3000) g",
            "CREATE TABLE other (id int PRIMARY KEY, v int)", "INSERT INTO other VALUES (1, 1)")
    catch_up(pg_dsn, target)
    run_sql(pg_dsn, "ALTER TABLE m ALTER COLUMN n TYPE bigint USING n * 2",
            "UPDATE m SET label = 'after' WHERE id <= 10", "INSERT INTO m VALUES (5000, 5000, 'new')",
            "INSERT INTO other VALUES (2, 2)",
            "ALTER TABLE m ALTER COLUMN label TYPE int USING length(label)", "DELETE FROM m WHERE id = 20")
    findings = catch_up(pg_dsn, target)
    assert any("table-recopy" in f and "public.m" in f and "USING" in f for f in findings), findings
    assert any("table-recopy" in f and "label" in f for f in findings), findings
    db = open_replica(target)
    assert one(db, "SELECT count(*) FROM _pg2edge_state WHERE scope = 'resync'") == 0
    assert sqlite_rows(db, "m", ["id", "n", "label"]) == sorted(
        (int(a), int(b), int(c)) for a, b, c in pg_rows(pg_dsn, "m", ["id", "n", "label"]))
    assert one(db, "SELECT n FROM m WHERE id = 7") == 14
    assert sqlite_rows(db, "other", ["id", "v"]) == [(1, 1), (2, 2)]
    assert schema_differences(pg_dsn, db, ["m", "other"]) == []
    assert validate(pg_dsn, target, mode="full", timeout=30).clean
    db.close()


def test_resync_recopies_chosen_tables_and_rejoins_exactly_once(pg_dsn: str, tmp_path: Path) -> None:
    from pg2edge.pipeline.resync import resync_tables

    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, v text)", "CREATE TABLE b (id int PRIMARY KEY, v text)",
            "INSERT INTO a SELECT g, 'a' FROM generate_series(1, 500) g", "INSERT INTO b VALUES (1, 'b')")
    catch_up(pg_dsn, target)
    db = open_replica(target)
    with db:  # the replica drifted (a damaged row, a change parked in the retry queue): resync repairs it
        db.execute("UPDATE a SET v = 'damaged' WHERE id = 3")
        db.execute("DELETE FROM a WHERE id = 4")
        for status in ("retry", "dead"):
            db.execute("INSERT INTO _pg2edge_queue (status, source_table, keys, commit_lsn, event, created_at, "
                       "updated_at) VALUES (?, 'public.a', '[\"public.a:[1]\"]', 1, '{}', 0, 0)", (status,))
    db.close()
    run_sql(pg_dsn, "UPDATE a SET v = 'before' WHERE id = 5")
    report = resync_tables(dsn=pg_dsn, target=target, tables="a", say=lambda _m: None)
    assert report.tables == {"public.a": 500}
    run_sql(pg_dsn, "UPDATE a SET v = 'after' WHERE id = 6", "INSERT INTO b VALUES (2, 'b')")
    catch_up(pg_dsn, target)
    db = open_replica(target)
    assert sqlite_rows(db, "a", ["id", "v"]) == sorted((int(i), v) for i, v in pg_rows(pg_dsn, "a", ["id", "v"]))
    assert one(db, "SELECT v FROM a WHERE id = 3") == "a"
    assert db.execute("SELECT status FROM _pg2edge_queue").fetchall() == [("dead",)]  # superseded by the copy
    assert sqlite_rows(db, "b", ["id", "v"]) == [(1, "b"), (2, "b")]
    assert validate(pg_dsn, target, mode="full", timeout=30).clean
    db.close()


def test_non_superuser_source_runs_in_fallback_mode_and_names_what_it_cannot_see(pg_dsn: str, tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pg2edge.pipeline.ddl_capture import FALLBACK
    from pg2edge.pipeline.status import replica_status

    db_name = conninfo_to_dict(pg_dsn)["dbname"]
    role = f"app_{db_name}"[:60]
    run_sql(pg_dsn, f'CREATE ROLE "{role}" LOGIN REPLICATION PASSWORD \'pw\'',
            f'GRANT CREATE ON DATABASE "{db_name}" TO "{role}"', f'GRANT CREATE ON SCHEMA public TO "{role}"')
    app = make_conninfo(pg_dsn, user=role, password="pw")
    target = tmp_path / "r.db"
    try:
        run_sql(app, "CREATE TABLE actor (id int PRIMARY KEY, name text)",
                "INSERT INTO actor SELECT g, 'a' || g FROM generate_series(1, 200) g",
                "CREATE TABLE category (id int PRIMARY KEY, name text)",
                "INSERT INTO category SELECT g, 'c' || g FROM generate_series(1, 16) g",
                "CREATE TABLE film (id int PRIMARY KEY, title text)", "INSERT INTO film VALUES (1, 'f')")
        catch_up(app, target)
        db = open_replica(target)
        assert replica_status(target).schema_capture == FALLBACK
        run_sql(app, "ALTER TABLE actor ADD COLUMN nick text NOT NULL DEFAULT 'none'",
                "INSERT INTO actor (id, name) VALUES (201, 'new')",
                "ALTER TABLE category RENAME COLUMN name TO title", "UPDATE category SET title = 'r' WHERE id = 1",
                "CREATE INDEX film_title_idx ON film (title)")
        said: list[str] = []
        run_sync(dsn=app, target=target, until_caught_up=True, heartbeat_interval=0.2, say=said.append)
        # followed exactly from Relation messages + catalog reads
        assert one(db, "SELECT count(*) FROM actor WHERE nick = 'none'") == 201
        assert sqlite_rows(db, "actor", ["id", "name", "nick"]) == sorted(
            (int(a), b, c) for a, b, c in pg_rows(app, "actor", ["id", "name", "nick"]))
        assert [r[1] for r in db.execute("PRAGMA table_info(category)")] == ["id", "title"]
        assert one(db, "SELECT title FROM category WHERE id = 1") == "r"
        # an index reaches no Relation message: named
        assert any("schema-change-unseen" in m and "public.film" in m and "indexes" in m for m in said), said
        assert not any(ts.paused for ts in state.read_tables(db).values())
        # RENAME TO: the Relation message of the table's next change carries its oid: followed there
        run_sql(app, "ALTER TABLE film RENAME TO films", "INSERT INTO films VALUES (2, 'g')")
        said.clear()
        findings = catch_up(app, target)
        assert any("table-renamed" in f and "public.films" in f for f in findings), findings
        assert sqlite_rows(db, "films", ["id", "title"]) == [(1, "f"), (2, "g")]
        assert one(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'film'") == 0
        assert db.execute("SELECT count(*) FROM _pg2edge_queue").fetchone() == (0,)
        # DROP TABLE reaches no Relation message: named (its oid is gone) and the table paused
        run_sql(app, "DROP TABLE category", "INSERT INTO actor (id, name) VALUES (202, 'after drop')")
        run_sync(dsn=app, target=target, until_caught_up=True, heartbeat_interval=0.2, say=said.append)
        assert any("table-dropped-unseen" in m and "public.category" in m for m in said), said
        tables = state.read_tables(db)
        assert tables["public.category"].paused and not tables["public.actor"].paused
        assert one(db, "SELECT count(*) FROM actor WHERE id = 202") == 1
        db.close()
    finally:
        from pg2edge.pipeline.teardown import teardown_replica

        teardown_replica(dsn=pg_dsn, target=target)


def test_resync_cli_names_an_unknown_table_in_one_line(pg_dsn: str, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY)", "INSERT INTO a VALUES (1)")
    catch_up(pg_dsn, target)
    bad = run_cli("resync", "--source", pg_dsn, "--target", str(target), "--tables", "nope")
    assert bad.returncode == 2, bad
    assert bad.stderr.strip().count("\n") == 0 and "public.nope" in bad.stderr, bad.stderr
    good = run_cli("resync", "--source", pg_dsn, "--target", str(target), "--tables", "a")
    assert good.returncode == 0, good.stderr
    assert "'public.a': 1" in good.stdout
    status = run_cli("status", "--target", str(target), "--format", "json")
    assert '"schema_capture": "event-triggers"' in status.stdout


@pytest.mark.slow
def test_create_table_matching_the_selection_is_published_and_copied(pg_dsn: str, tmp_path: Path) -> None:
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, v text)", "INSERT INTO a VALUES (1, 'a')")
    catch_up(pg_dsn, target)
    run_sql(pg_dsn, "CREATE TABLE fresh (id int PRIMARY KEY, v text)",
            "INSERT INTO fresh SELECT g, 'f' || g FROM generate_series(1, 100) g",
            "CREATE TABLE keyless (v text)", "INSERT INTO a VALUES (2, 'b')")
    findings = catch_up(pg_dsn, target)
    assert any("table-created public.fresh" in f and "copied" in f for f in findings), findings
    assert any("table-created public.keyless" in f and "no primary key" in f for f in findings), findings
    run_sql(pg_dsn, "UPDATE fresh SET v = 'changed' WHERE id = 5", "DELETE FROM fresh WHERE id = 6",
            "INSERT INTO fresh VALUES (101, 'new')")
    catch_up(pg_dsn, target)
    db = open_replica(target)
    assert sqlite_rows(db, "fresh", ["id", "v"]) == sorted((int(i), v) for i, v in pg_rows(pg_dsn, "fresh", ["id", "v"]))
    assert one(db, "SELECT v FROM fresh WHERE id = 5") == "changed"
    assert one(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'keyless'") == 0
    assert schema_differences(pg_dsn, db, ["a", "fresh"]) == []
    assert validate(pg_dsn, target, mode="full", timeout=30).clean
    db.close()


def test_schema_change_item_round_trips_through_json() -> None:
    from pg2edge.pipeline.events import SchemaChange

    change = SchemaChange(lsn=42, tag="ALTER TABLE", statement="ALTER TABLE t ADD COLUMN c int", index=3,
                          commands=({"tag": "ALTER TABLE", "identity": "public.t"},),
                          dropped=({"type": "index", "schema": "public", "name": "i"},),
                          catalog={"rels": [["16390", "public", "t", "16397", "r"]]}, capture="slot_a")
    again = SchemaChange.from_json(change.to_json())
    assert again == change
    assert SchemaChange.from_dict({"tag": "X", "statement": "s", "error": "boom"}).error == "boom"


def test_sync_started_after_renames_follows_them_from_the_replicas_names(pg_dsn: str, tmp_path: Path) -> None:
    """The sync was down while the table and a column were renamed: at start the publication already lists the
    new name; the mappings are aligned to the replica's names by oid and the renames follow in the stream."""
    target = tmp_path / "r.db"
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    catch_up(pg_dsn, target)
    db = open_replica(target)
    db.close()
    run_sql(pg_dsn, "ALTER TABLE t ALTER COLUMN v SET STORAGE EXTERNAL",
            "UPDATE t SET v = repeat('x', 10000) WHERE id = 2",
            "BEGIN; ALTER TABLE t RENAME TO t2; ALTER TABLE t2 RENAME COLUMN v TO w; "
            "UPDATE t2 SET id = id WHERE id = 2; INSERT INTO t2 VALUES (3, 'c'); COMMIT")
    findings = catch_up(pg_dsn, target)
    db = open_replica(target)
    assert any("table-renamed public.t2" in f for f in findings), findings
    assert db.execute("SELECT count(*) FROM _pg2edge_queue").fetchone() == (0,)
    assert [r[1] for r in db.execute("PRAGMA table_info(t2)")] == ["id", "w"]
    assert one(db, "SELECT w FROM t2 WHERE id = 3") == "c"
    assert not any(ts.paused for ts in state.read_tables(db).values())
    db.close()
