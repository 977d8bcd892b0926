"""Crash safety and bad input against a real sqld: SIGKILLs under load, a server restart, an oversize request."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.validators import validate
from tests.conftest import _cli_env
from tests.support.edge import SqldServer
from tests.support.rows import pg_rows, run_sql
from tests.support.writeload import WriteLoad


def _quiet(_: str) -> None:
    pass


def _start_sync(dsn: str, url: str, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    env = _cli_env({"PG2EDGE_STAGING_DIR": str(cwd / "staging")})
    return subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--target", url,
                             "--heartbeat", "0.2", *extra], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _assert_equal(dsn: str, url: str) -> None:
    report = validate(dsn, parse_target(url, env={}), mode="full", timeout=60)
    bad = {t.table: [m.key for m in t.mismatches][:5] for t in report.tables if t.mismatches}
    assert report.clean, (bad, [(t.table, t.source_rows, t.replica_rows) for t in report.tables])


def _ledger(dsn: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:  # inserts only: an apply done twice would show as an extra row
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO ledger (amount) VALUES (1)")
                time.sleep(0.003)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_sigkill_under_load_loses_and_doubles_nothing(pg_dsn: str, sqld: SqldServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    load = WriteLoad(pg_dsn, "load", rows_per_txn=4, pause=0.002)
    load.create_table()
    run_sql(pg_dsn, "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount int NOT NULL)",
            "INSERT INTO load (id, val) SELECT g, 'seed' FROM generate_series(100000, 120000) g")
    rng = random.Random(12)
    load.start()
    stop = threading.Event()
    writer = _ledger(pg_dsn, stop)
    kills = 0
    try:
        for _ in range(12):
            proc = _start_sync(pg_dsn, sqld.url, tmp_path)
            time.sleep(rng.uniform(0.8, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
    finally:
        stop.set()
        writer.join()
        load.stop()
    assert kills >= 10
    report = run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up"
    _assert_equal(pg_dsn, sqld.url)
    with HranaClient(parse_target(sqld.url, env={})) as client:
        remote = client.execute('SELECT count(*), sum("amount") FROM "ledger"').rows[0]
    assert remote == tuple(pg_rows(pg_dsn, "SELECT count(*), sum(amount) FROM ledger")[0])


@pytest.mark.slow
def test_sqld_restart_mid_stream_is_survived_without_an_operator(pg_dsn: str, sqld: SqldServer, tmp_path: Path,
                                                                 run_cli: object,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    load = WriteLoad(pg_dsn, "load", rows_per_txn=3, pause=0.003)
    load.create_table()
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    proc = _start_sync(pg_dsn, sqld.url, tmp_path)
    try:
        load.start()
        time.sleep(2)
        sqld.stop()  # the server goes away mid-stream ...
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()[1]  # ... the daemon waits for it (retries in place) ...
        sqld.start()  # ... and it comes back on the same port with the same data
        time.sleep(2)
        load.stop()
        lsn = pg_rows(pg_dsn, "SELECT pg_current_wal_lsn()::text")[0][0]
        from pg2edge.pipeline.status import wait_for_lsn

        wait_for_lsn(parse_target(sqld.url, env={}), lsn, timeout=60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    _assert_equal(pg_dsn, sqld.url)


def test_a_transaction_over_the_request_limit_is_refused_whole(pg_dsn: str, sqld: SqldServer, tmp_path: Path,
                                                               run_cli: object) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    run_sql(pg_dsn, "CREATE TABLE files (id int PRIMARY KEY, body text)", "INSERT INTO files VALUES (1, 'small')")
    res = run_cli("sync", "--source", pg_dsn, "--target", sqld.url, "--until-caught-up", env=env)  # type: ignore[operator]
    assert res.returncode == 0, res.stderr
    before = pg_rows(pg_dsn, "SELECT pg_current_wal_lsn()::text")[0][0]  # the refused transaction comes after
    with psycopg.connect(pg_dsn) as conn:  # one transaction: a small row and one over the 4 MiB request limit
        conn.execute("INSERT INTO files VALUES (2, 'also small')")
        conn.execute("INSERT INTO files VALUES (3, repeat('x', 6 * 1024 * 1024))")
    res = run_cli("sync", "--source", pg_dsn, "--target", sqld.url, "--until-caught-up", env=env)  # type: ignore[operator]
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert sqld.url in lines[0] and "do not fit one request" in lines[0]
    with HranaClient(parse_target(sqld.url, env={})) as client:
        assert client.execute('SELECT "id" FROM "files" ORDER BY "id"').rows == [(1,)]  # nothing of it applied
        pos = json.loads(client.execute("SELECT value FROM _pg2edge_state WHERE scope = 'position'").rows[0][0])
    stream = pg_rows(pg_dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots")[0][0]
    from pg2edge.pipeline.lsn import parse_lsn

    # the slot was not moved past the refused transaction (a heartbeat after the first sync may be acknowledged:
    # it precedes the transaction, which PostgreSQL therefore sends again)
    assert parse_lsn(stream) <= parse_lsn(before), (stream, before, pos)
