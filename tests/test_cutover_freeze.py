"""Write freeze on a real PostgreSQL: frozen tables refuse every write with a clear error; unfreeze undoes it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.cutover.errors import FreezeError
from pg2edge.pipeline.cutover.freeze import freeze, frozen_tables, plan_freeze, unfreeze
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sourcechanges import teardown

WRITES = [
    "INSERT INTO {t} (id, v) VALUES (100, 'x')",
    "UPDATE {t} SET v = 'y'",
    "DELETE FROM {t}",
    "TRUNCATE {t}",
]


@pytest.fixture
def src(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE products (id int PRIMARY KEY, v text)')
        conn.execute('CREATE SCHEMA "Shop"')
        conn.execute('CREATE TABLE "Shop"."Odd ""name""" (id int PRIMARY KEY, v text)')
        conn.execute('CREATE TABLE orders (id int PRIMARY KEY, v text)')
        for t in ('products', '"Shop"."Odd ""name"""', 'orders'):
            conn.execute(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    return pg_dsn


def write_errors(dsn: str, table: str) -> list[psycopg.Error | None]:
    out: list[psycopg.Error | None] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in WRITES:
            try:
                conn.execute(stmt.format(t=table))  # type: ignore[arg-type]
                out.append(None)
            except psycopg.Error as exc:
                out.append(exc)
    return out


def test_freeze_refuses_every_write_with_a_clear_error(src: str) -> None:
    result = freeze(src, ["products", "Shop.Odd \"name\""])
    assert [c.description.split()[0] for c in result.changes] == ["create", "freeze", "freeze"]
    assert all(c.undo_sql for c in result.changes)
    assert result.lsn and parse_lsn(result.lsn) > 0
    for table, shown in (("products", "public.products"), ('"Shop"."Odd ""name"""', '"Shop"."Odd ""name"""')):
        errors = write_errors(src, table)
        assert all(isinstance(e, psycopg.errors.ReadOnlySqlTransaction) for e in errors), errors
        message = str(errors[0])
        assert shown in message and "edge SQLite" in message and "pg2edge cutover rollback" in message
        assert {e.diag.message_primary.split("(")[1].split()[0] for e in errors} == {  # type: ignore[union-attr]
            "INSERT", "UPDATE", "DELETE", "TRUNCATE"}
    assert write_errors(src, "orders") == [None, None, None, None]  # other tables stay writable
    with psycopg.connect(src) as conn:  # reads are untouched, and nothing was written
        assert conn.execute("SELECT count(*), min(v) FROM products").fetchone() == (2, "a")


def test_freeze_and_unfreeze_are_idempotent(src: str) -> None:
    first = freeze(src, ["products"])
    again = freeze(src, ["public.products"])
    assert first.changes and again.changes == [] and again.lsn is None
    with psycopg.connect(src) as conn:
        assert frozen_tables(conn) == [("public", "products")]
        assert plan_freeze(conn, ["products"]) == []
    undone = unfreeze(src)
    assert [c.description for c in undone.changes] == [
        "unfreeze table public.products (writes allowed again)", "drop function public.pg2edge_frozen()"]
    assert write_errors(src, "products") == [None, None, None, None]
    assert unfreeze(src).changes == []
    with psycopg.connect(src) as conn:
        assert frozen_tables(conn) == []
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'pg2edge_frozen'").fetchone() == (0,)


def test_undo_sql_of_a_freeze_unfreezes(src: str) -> None:
    result = freeze(src, ["products", "orders"])
    teardown(src, result.changes)
    assert write_errors(src, "products") == [None, None, None, None]
    with psycopg.connect(src) as conn:
        assert frozen_tables(conn) == []


def test_partial_unfreeze_keeps_the_function(src: str) -> None:
    freeze(src, ["products", "orders"])
    result = unfreeze(src, tables=["orders"])
    assert result.tables == ["public.orders"]
    assert write_errors(src, "orders") == [None, None, None, None]
    assert all(isinstance(e, psycopg.errors.ReadOnlySqlTransaction) for e in write_errors(src, "products"))


def test_freeze_is_recorded_in_the_replica(src: str, sqlite_path: Path) -> None:
    result = freeze(src, ["products"], replica=sqlite_path)
    db = open_replica(sqlite_path)
    record = state.read_record(db, "cutover", "freeze")
    assert record["frozen"] is True and record["tables"] == ["public.products"]
    assert record["lsn"] == result.lsn and record["lsn_int"] == parse_lsn(result.lsn or "0/0")
    db.close()
    undone = unfreeze(src, replica=sqlite_path)  # tables come from the record
    assert undone.tables == ["public.products"]
    db = open_replica(sqlite_path)
    record = state.read_record(db, "cutover", "freeze")
    assert record["frozen"] is False and record["tables"] == []
    db.close()


def test_freeze_names_a_missing_table(src: str) -> None:
    with pytest.raises(FreezeError, match="no such table public.nope"):
        freeze(src, ["products", "nope"])
    with psycopg.connect(src) as conn:
        assert frozen_tables(conn) == []  # nothing half-done


def test_cutover_cli_freezes_published_tables_and_unfreezes(src: str, sqlite_path: Path, run_cli) -> None:
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CREATE PUBLICATION edge_pub FOR TABLE products, orders")
    db = open_replica(sqlite_path)
    with db:
        state.write_stream(db, state.StreamInfo(slot="edge_slot", publication="edge_pub"))
    db.close()

    done = run_cli("cutover", "freeze", "--source", src, "--target", str(sqlite_path))
    assert done.returncode == 0, done.stderr
    assert "changed: freeze table public.orders" in done.stdout and "public.products" in done.stdout
    assert 'DROP TRIGGER IF EXISTS "pg2edge_frozen" ON "public"."orders";' in done.stdout
    assert "pg2edge cutover unfreeze" in done.stdout
    assert "password" not in done.stdout + done.stderr
    assert all(isinstance(e, psycopg.errors.ReadOnlySqlTransaction) for e in write_errors(src, "orders"))
    assert write_errors(src, '"Shop"."Odd ""name"""') == [None, None, None, None]

    again = run_cli("cutover", "freeze", "--source", src, "--target", str(sqlite_path))
    assert again.returncode == 0 and "nothing changed" in again.stdout

    done = run_cli("cutover", "unfreeze", "--source", src, "--target", str(sqlite_path))
    assert done.returncode == 0, done.stderr
    assert "changed: unfreeze table public.orders" in done.stdout
    assert write_errors(src, "orders") == [None, None, None, None]

    backup = run_cli("cutover", "backup", "--target", str(sqlite_path), "--output", str(sqlite_path) + ".bak")
    assert backup.returncode == 0 and "backed up" in backup.stdout
    assert Path(str(sqlite_path) + ".bak").is_file()


def test_cutover_cli_names_a_missing_table(src: str, sqlite_path: Path, run_cli) -> None:
    done = run_cli("cutover", "freeze", "--source", src, "--target", str(sqlite_path), "--tables", "products,nope")
    assert done.returncode == 2
    assert "no such table public.nope" in done.stderr


def test_freezing_a_partitioned_table_freezes_its_partitions(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int, v text) PARTITION BY RANGE (id)")
        conn.execute("CREATE TABLE events_a PARTITION OF events FOR VALUES FROM (0) TO (100)")
        conn.execute("CREATE TABLE events_b PARTITION OF events FOR VALUES FROM (100) TO (200)")
    result = freeze(pg_dsn, ["events"])
    assert result.changes[-1].description.startswith("freeze table public.events_b")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for stmt in ("INSERT INTO events VALUES (1, 'a')", "INSERT INTO events_a VALUES (2, 'a')",
                     "TRUNCATE events_b"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute(stmt)  # type: ignore[arg-type]
    unfreeze(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO events_a VALUES (2, 'a')")
