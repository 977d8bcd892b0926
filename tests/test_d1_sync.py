"""Live sync PostgreSQL -> D1 through the pg2edge Worker under real workerd (wrangler dev --local).

D1 is read back straight from its SQLite file under the wrangler state directory
and compared with the source through the one value codec.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline.d1.daemon import run_sync_d1
from pg2edge.pipeline.d1.status import wait_for_lsn
from pg2edge.pipeline.remote import resolve
from pg2edge.pipeline.remote.http import RetryPolicy as HttpRetry
from pg2edge.pipeline.status import replica_status
from tests.support.d1 import LocalD1, wrangler_binary
from tests.support.replica import assert_replica_equals, current_lsn
from tests.support.rows import run_sql
from tests.support.writeload import WriteLoad

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def d1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalD1]:
    if wrangler_binary() is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    local = LocalD1(tmp_path / "d1").start()
    monkeypatch.setenv("PG2EDGE_TARGET_AUTH_TOKEN", local.token)
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))  # where the snapshot is staged
    try:
        yield local
    finally:
        local.stop()


def sync(dsn: str, d1: LocalD1, **kwargs: object) -> object:
    return run_sync_d1(dsn=dsn, target=d1.url, until_caught_up=True, say=_quiet,
                       http=HttpRetry(retry_for=60), **kwargs)  # type: ignore[arg-type]


def test_snapshot_then_every_kind_of_change_reaches_d1(pg_dsn: str, d1: LocalD1) -> None:
    run_sql(pg_dsn,
            "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], "
            "body text, at timestamptz, meta jsonb, img bytea)",
            "INSERT INTO products SELECT g, 'p' || g, g * 1.5, ARRAY['a', 'b'], repeat('x', g), "
            "'2024-01-01'::timestamptz + g * interval '1 hour', jsonb_build_object('g', g), '\\x00ff'::bytea "
            "FROM generate_series(1, 300) g",
            "CREATE TABLE notes (id bigint PRIMARY KEY, note text)",
            "CREATE TABLE orders (id int PRIMARY KEY)",
            "CREATE TABLE lines (id int PRIMARY KEY, order_id int NOT NULL REFERENCES orders(id) "
            "DEFERRABLE INITIALLY DEFERRED)")
    sync(pg_dsn, d1)
    assert_replica_equals(pg_dsn, d1.sqlite_file())
    run_sql(pg_dsn,
            "INSERT INTO products VALUES (1000, 'new', 9.99, '{}', 'b', now(), '{\"k\": [1, 2]}', NULL)",
            "UPDATE products SET price = price + 1 WHERE id <= 50",
            "UPDATE products SET id = id + 5000 WHERE id = 7",  # a key change
            "DELETE FROM products WHERE id BETWEEN 100 AND 120",
            "ALTER TABLE products ALTER COLUMN body SET STORAGE EXTERNAL",
            "UPDATE products SET body = repeat('toast', 5000) WHERE id = 2",
            "UPDATE products SET name = 'toast untouched' WHERE id = 2",  # body arrives as unchanged TOAST
            "INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 50) g",
            "TRUNCATE notes",
            "INSERT INTO notes VALUES (1, 'after truncate')",
            "ALTER TABLE notes ADD COLUMN extra text",
            "INSERT INTO notes VALUES (2, 'with a new column', 'x')",
            # one transaction: the child before its parent (a deferred FK; the translated FK is deferred too)
            "BEGIN; INSERT INTO lines VALUES (1, 10); INSERT INTO orders VALUES (10); COMMIT",
            "BEGIN; DELETE FROM orders WHERE id = 10; DELETE FROM lines WHERE id = 1; "
            "INSERT INTO orders VALUES (11); INSERT INTO lines VALUES (2, 11); COMMIT")
    report = sync(pg_dsn, d1)
    assert report.stopped_by == "caught up"  # type: ignore[attr-defined]
    assert_replica_equals(pg_dsn, d1.sqlite_file())
    assert "REFERENCES" in d1.read("SELECT sql FROM sqlite_schema WHERE name = 'lines'")[0][0]
    assert d1.read("SELECT id, order_id FROM lines") == [(2, 11)]
    assert d1.wrangler_query("SELECT note, extra FROM notes ORDER BY id") == [
        {"note": "after truncate", "extra": None}, {"note": "with a new column", "extra": "x"}]
    status = replica_status(resolve(d1.url), source=pg_dsn)
    assert status.lag_bytes is not None and status.retained_wal_bytes is not None
    assert status.retry_queue == 0 and status.dlq == 0 and status.snapshot == "done"


def _start_sync(pg_dsn: str, d1: LocalD1, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    env.pop("PG2EDGE_SOURCE", None)
    return subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", pg_dsn, "--target", d1.url],
                            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_of_the_daemon_ten_times_under_load_loses_and_doubles_nothing(pg_dsn: str, d1: LocalD1,
                                                                             tmp_path: Path) -> None:
    load = WriteLoad(pg_dsn, "load", rows_per_txn=4, pause=0.001)
    load.create_table()
    run_sql(pg_dsn, "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount int NOT NULL)")
    sync(pg_dsn, d1)  # the snapshot; then the stream is killed again and again
    rng = random.Random(13)
    stop = threading.Event()

    def ledger() -> None:  # inserts only: a doubled apply shows as an extra row; updates of n count twice
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO ledger (amount) VALUES (1)")
                time.sleep(0.002)

    writer = threading.Thread(target=ledger)
    load.start()
    writer.start()
    kills = 0
    positions = []
    try:
        for _ in range(10):
            before = d1.read("SELECT value FROM _pg2edge_state WHERE scope = 'position'")[0][0]
            proc = _start_sync(pg_dsn, d1, tmp_path)
            deadline = time.monotonic() + 60  # start-up takes 1.5-5 s on this shared machine: kill it streaming
            while d1.read("SELECT value FROM _pg2edge_state WHERE scope = 'position'")[0][0] == before:
                assert time.monotonic() < deadline and proc.poll() is None, "the daemon applied nothing"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            positions.append(d1.read("SELECT value FROM _pg2edge_state WHERE scope = 'position'")[0][0])
    finally:
        stop.set()
        writer.join()
        load.stop()
    assert kills == 10
    assert len(set(positions)) == 10, positions  # every daemon had applied batches when it was killed
    report = sync(pg_dsn, d1)
    assert report.stopped_by == "caught up"  # type: ignore[attr-defined]
    assert_replica_equals(pg_dsn, d1.sqlite_file())
    applied = d1.read("SELECT count(*) FROM ledger")[0][0]
    assert applied > 100


def test_a_worker_restart_mid_stream_is_ridden_out_unattended(pg_dsn: str, d1: LocalD1, tmp_path: Path) -> None:
    load = WriteLoad(pg_dsn, "load", rows_per_txn=3, pause=0.002)
    load.create_table()
    sync(pg_dsn, d1)
    proc = _start_sync(pg_dsn, d1, tmp_path)
    load.start()
    try:
        wait_for_lsn(d1.url, current_lsn(pg_dsn), timeout=60)
        d1.stop(signal.SIGKILL)  # workerd gone mid-stream, longer than the session's quiet first 5 s of retries
        time.sleep(7.0)
        assert proc.poll() is None  # the daemon waits and retries
        d1.start()
        time.sleep(1.0)
    finally:
        load.stop()
    token = current_lsn(pg_dsn)
    reached = wait_for_lsn(d1.url, token, timeout=120)
    assert reached.bookmark  # the D1 Sessions bookmark of the read that saw the LSN
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "retrying" in err
    assert_replica_equals(pg_dsn, d1.sqlite_file())


def test_cli_sync_status_and_wait_against_d1(pg_dsn: str, d1: LocalD1, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE prefs (id int PRIMARY KEY, theme text)", "INSERT INTO prefs VALUES (1, 'dark')")
    env = {"PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    done = run_cli("sync", "--source", pg_dsn, "--target", d1.url, "--until-caught-up", env=env)
    assert done.returncode == 0, done.stderr
    assert d1.token not in done.stdout + done.stderr
    status = run_cli("status", "--target", d1.url, "--source", pg_dsn, "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["target"] == d1.url and data["snapshot"] == "done" and data["lag_bytes"] is not None
    wait = run_cli("wait", "--target", d1.url, "--lsn", current_lsn(pg_dsn), "--timeout", "0.5", env=env)
    assert wait.returncode == 1 or "D1 bookmark" in wait.stdout  # nothing syncs now: the LSN may be ahead
    bad = run_cli("status", "--target", d1.url, env={"PG2EDGE_TARGET_AUTH_TOKEN": "wrong"})
    assert bad.returncode == 2 and "authentication refused" in bad.stderr and "wrong" not in bad.stderr


def test_validate_reads_d1_through_the_worker_and_finds_a_tampered_row(pg_dsn: str, d1: LocalD1) -> None:
    from pg2edge.validators.run import validate

    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), big bigint)",
            "INSERT INTO items SELECT g, 'n' || g, g / 3.0, 9007199254740993 + g FROM generate_series(1, 500) g")
    sync(pg_dsn, d1)
    target = resolve(d1.url)
    for mode in ("count", "sample", "full"):
        report = validate(pg_dsn, target, mode=mode, timeout=30)  # type: ignore[arg-type]
        assert report.clean, (mode, report)
    d1.post("/v1/batch", {"statements": [{"sql": "UPDATE items SET name = 'tampered' WHERE id = 7"}]})
    report = validate(pg_dsn, target, mode="full", timeout=30)  # type: ignore[arg-type]
    assert not report.clean
    [table] = report.tables
    assert [(m.key, m.kind) for m in table.mismatches] == [({"id": 7}, "changed")]


def test_cutover_check_freeze_drain_unfreeze_on_d1(pg_dsn: str, d1: LocalD1, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE items (id serial PRIMARY KEY, name text)", "INSERT INTO items (name) VALUES ('a')")
    env = {"PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    assert run_cli("sync", "--source", pg_dsn, "--target", d1.url, "--until-caught-up", env=env,
                   ).returncode == 0
    assert run_cli("validate", "--source", pg_dsn, "--target", d1.url, env=env).returncode == 0
    check = run_cli("cutover", "check", "--source", pg_dsn, "--target", d1.url, "--format", "json", env=env)
    gates = {g["name"]: g["status"] for g in json.loads(check.stdout)["gates"]}
    assert gates["integrity"] == "PASS" and gates["row counts equal"] == "PASS" and gates["DLQ empty"] == "PASS"
    assert all(status != "FAIL" for status in gates.values()), gates
    assert run_cli("cutover", "freeze", "--source", pg_dsn, "--target", d1.url, env=env).returncode == 0
    drain = run_cli("cutover", "drain", "--source", pg_dsn, "--target", d1.url, "--timeout", "30", env=env)
    assert drain.returncode == 0, drain.stderr
    assert run_cli("cutover", "unfreeze", "--source", pg_dsn, "--target", d1.url, env=env).returncode == 0


def test_validate_repair_on_d1(pg_dsn: str, d1: LocalD1, run_cli) -> None:
    """Rows changed, removed and added behind pg2edge's back in D1 are found by key and re-copied through
    the D1 sink (one guarded batch via the Worker); D1's file then equals the source again."""
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text, big bigint)",
            "INSERT INTO items SELECT g, 'n' || g, 9007199254740993 + g FROM generate_series(1, 300) g")
    env = {"PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    assert run_cli("sync", "--source", pg_dsn, "--target", d1.url, "--until-caught-up", env=env).returncode == 0
    status, _ = d1.post("/v1/batch", {"statements": [
        {"sql": 'UPDATE "items" SET "name" = ?, "big" = 1 WHERE "id" = ?', "params": ["tampered", 5]},
        {"sql": 'DELETE FROM "items" WHERE "id" = ?', "params": [6]},
        {"sql": 'INSERT INTO "items" ("id", "name", "big") VALUES (?, ?, ?)', "params": [9999, "extra", 0]}]})
    assert status == 200
    res = run_cli("validate", "--source", pg_dsn, "--target", d1.url, "--format", "json", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    kinds = sorted(m["kind"] for t in json.loads(res.stdout)["tables"] for m in t["mismatches"])
    assert kinds == ["changed", "extra", "missing"], res.stdout
    res = run_cli("validate", "--source", pg_dsn, "--target", d1.url, "--repair", "--format", "json", env=env)
    report = json.loads(res.stdout)
    assert report["repaired"] is True and report["tables"][0]["repaired"] == 3, res.stdout + res.stderr
    assert d1.read('SELECT "name", "big" FROM "items" WHERE "id" IN (5, 6, 9999) ORDER BY "id"') == [
        ("n5", 9007199254740998), ("n6", 9007199254740999)]
    res = run_cli("validate", "--source", pg_dsn, "--target", d1.url, "--format", "json", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
