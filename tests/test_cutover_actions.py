"""drain / promote / rollback on a real PostgreSQL and a real replica (and a real `pg2edge sync` process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.cutover.actions import drain, promote, rollback
from pg2edge.pipeline.cutover.errors import CutoverError
from pg2edge.pipeline.cutover.freeze import freeze
from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.sinks.sqlite import open_replica

REPO = Path(__file__).resolve().parents[1]


def _quiet(_line: str) -> None:
    pass


@pytest.fixture
def synced(pg_dsn: str, sqlite_path: Path) -> tuple[str, Path]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), "
                     "active boolean NOT NULL DEFAULT true, added timestamptz, photo bytea)")
        conn.execute("INSERT INTO products (name, price, added) SELECT 'p' || g, g * 1.5, "
                     "'2024-01-01 10:00+00'::timestamptz + g * interval '1 hour' FROM generate_series(1, 20) g")
    run_sync(dsn=pg_dsn, target=sqlite_path, tables="products", until_caught_up=True, say=_quiet)
    return pg_dsn, sqlite_path


def _insert(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO products (name) VALUES ('after')")


def test_freeze_refuses_writes_and_rollback_allows_them_again(synced: tuple[str, Path]) -> None:
    dsn, target = synced
    with pytest.raises(CutoverError, match="freeze"):
        drain(dsn, target, timeout=1)
    freeze(dsn, ["products"], replica=target)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="public.products is frozen"):
        _insert(dsn)
    done = drain(dsn, target, timeout=10)
    assert "freeze LSN" in done.changes[0]
    result = rollback(dsn, target)
    assert any("unfreeze table public.products" in c for c in result.changes)
    _insert(dsn)
    assert rollback(dsn, target).changes == []  # idempotent


def test_promote_stops_a_running_sync_and_records_the_cutover(synced: tuple[str, Path]) -> None:
    dsn, target = synced
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--target", str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:  # the daemon records its pid once it streams
            db = open_replica(target)
            rec = state.read_record(db, "daemon", "pid")
            db.close()
            if rec and rec.get("pid") == proc.pid:
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        freeze(dsn, ["products"], replica=target)
        drain(dsn, target, timeout=20)
        result = promote(dsn, target)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert any(f"stopped the sync daemon (pid {proc.pid})" in c for c in result.changes)
    assert any("backed up the replica" in c for c in result.changes)
    db = open_replica(target)
    record = state.read_record(db, "cutover", "promote")
    daemon = state.read_record(db, "daemon", "pid")
    db.close()
    assert record["promoted"] is True and record["lsn"] == result.lsn and record["tables"] == {
        "products": "public.products"}
    assert daemon["pid"] is None
    again = promote(dsn, target)
    assert again.changes == []  # idempotent: nothing changed the second time


def test_rollback_after_promote_sends_replica_writes_back(synced: tuple[str, Path]) -> None:
    dsn, target = synced
    freeze(dsn, ["products"], replica=target)
    drain(dsn, target, timeout=10)
    promote(dsn, target)
    db = open_replica(target)  # the application writes through its own connection
    with db:
        db.execute("INSERT INTO products (id, name, price, active, added, photo) "
                   "VALUES (21, 'edge', '9.99', 1, '2025-02-03T04:05:06Z', x'00ff')")
        db.execute("UPDATE products SET name = 'renamed', price = '2.50', active = 0 WHERE id = 1")
        db.execute("DELETE FROM products WHERE id = 2")
        db.execute("UPDATE products SET id = 100 WHERE id = 3")
    db.close()
    result = rollback(dsn, target)
    assert any("replayed 4 replica write(s) to public.products" in c for c in result.changes), result.changes
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, name, price::text, active, added = '2025-02-03T04:05:06Z'::timestamptz, photo "
            "FROM products WHERE id IN (1, 2, 3, 21, 100)")}
        assert rows[21] == ("edge", "9.99", True, True, b"\x00\xff")
        assert rows[1][:3] == ("renamed", "2.50", False)
        assert 2 not in rows and 3 not in rows and rows[100][0] == "p3"
        new_id = conn.execute("INSERT INTO products (name) VALUES ('pg again') RETURNING id").fetchone()[0]
        assert new_id > 100  # the sequence moved past the replica's ids
    assert rollback(dsn, target).changes == []  # replayed once only
    db = open_replica(target)
    with db:
        db.execute("INSERT INTO products (id, name) VALUES (500, 'not captured')")
    assert db.execute("SELECT count(*) FROM _pg2edge_changelog WHERE replayed_at IS NULL").fetchone()[0] == 0
    db.close()
