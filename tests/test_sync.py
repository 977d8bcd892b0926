"""The sync daemon end to end: real PostgreSQL, real SQLite, real processes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time

import apsw
import psycopg
import pytest

from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.status import WaitTimeout, wait_for_lsn
from tests.conftest import REPO, _cli_env
from tests.support.replica import assert_replica_equals, current_lsn, wait_until
from tests.support.rows import run_sql
from tests.support.writeload import WriteLoad


def _quiet(_: str) -> None:
    pass


def test_changes_of_every_kind_stream_into_the_replica(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn,
         "CREATE TABLE docs (id int PRIMARY KEY, title text, body text, n numeric(12,2), tags text[], meta jsonb)",
         "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",
         "CREATE TABLE other (id bigint PRIMARY KEY, v text)",
         "INSERT INTO docs VALUES (1, 'a', repeat('x', 100000), 1.50, '{a,b}', '{\"k\": [1, 2]}')")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn,
         "UPDATE docs SET title = 'toast untouched' WHERE id = 1",  # body arrives as unchanged TOAST
         "INSERT INTO docs SELECT g, 't' || g, 'b', g, '{}', 'null' FROM generate_series(2, 50) g",
         "UPDATE docs SET id = 1000 WHERE id = 2",  # primary-key change
         "DELETE FROM docs WHERE id BETWEEN 10 AND 12",
         "INSERT INTO other SELECT g, 'v' FROM generate_series(1, 10) g",
         "TRUNCATE other",
         "INSERT INTO other VALUES (99, 'after truncate')")
    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up" and report.transactions >= 7
    assert_replica_equals(pg_dsn, sqlite_path)
    db = apsw.Connection(str(sqlite_path))
    assert len(db.execute("SELECT body FROM docs WHERE id = 1").fetchone()[0]) == 100000
    db.close()


def test_add_column_while_streaming(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'a')")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "ALTER TABLE items ADD COLUMN price numeric(10,2)", "INSERT INTO items VALUES (2, 'b', 9.99)",
         "UPDATE items SET price = 1.25 WHERE id = 1")
    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert any("column-added" in f for f in report.findings)
    assert_replica_equals(pg_dsn, sqlite_path)


def test_partitioned_table_streams_through_its_root(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn,
         "CREATE TABLE measures (id int, at date NOT NULL, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
         "CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
         "CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
         "INSERT INTO measures VALUES (1, '2024-05-01', 1), (2, '2025-05-01', 2)")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "INSERT INTO measures VALUES (3, '2024-06-01', 3), (4, '2025-06-01', 4)",
         "UPDATE measures SET v = 20 WHERE id = 2")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    db = apsw.Connection(str(sqlite_path))
    assert db.execute("SELECT id, v FROM measures ORDER BY id").fetchall() == [(1, 1), (2, 20), (3, 3), (4, 4)]
    db.close()


def test_read_your_writes_with_wait_and_status(pg_dsn: str, sqlite_path, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE prefs (id int PRIMARY KEY, theme text)")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    stop = threading.Event()
    daemon = threading.Thread(target=run_sync, kwargs=dict(dsn=pg_dsn, target=sqlite_path, stop=stop, say=_quiet))
    daemon.start()
    try:
        run_sql(pg_dsn, "INSERT INTO prefs VALUES (1, 'dark')")
        token = current_lsn(pg_dsn)  # what an app takes after its commit
        wait_for_lsn(sqlite_path, token, timeout=10)
        db = apsw.Connection(str(sqlite_path))
        assert db.execute("SELECT theme FROM prefs WHERE id = 1").fetchone() == ("dark",)
        db.close()
        result = run_cli("status", "--target", str(sqlite_path), "--source", pg_dsn, "--format", "json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["applied_lsn"] and status["retained_wal_bytes"] is not None and status["lag_bytes"] >= 0
    finally:
        stop.set()
        daemon.join(timeout=30)
    run_sql(pg_dsn, "INSERT INTO prefs VALUES (2, 'light')")
    with pytest.raises(WaitTimeout, match="is `pg2edge sync` running"):
        wait_for_lsn(sqlite_path, current_lsn(pg_dsn), timeout=0.5)
    result = run_cli("wait", "--target", str(sqlite_path), "--lsn", current_lsn(pg_dsn), "--timeout", "0.5")
    assert result.returncode == 1


def _start_sync(pg_dsn: str, sqlite_path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pg2edge", "sync", "--source", pg_dsn, "--target", str(sqlite_path)],
        env=_cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigterm_finishes_the_batch_and_exits_0(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    proc = _start_sync(pg_dsn, sqlite_path)
    try:
        wait_until(sqlite_path.exists, timeout=30)
        wait_for_lsn(sqlite_path, current_lsn(pg_dsn), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_sigkill_at_random_moments_under_load_loses_and_doubles_nothing(pg_dsn: str, sqlite_path) -> None:
    load = WriteLoad(pg_dsn, "load", rows_per_txn=4, pause=0.001)
    load.create_table()
    run_sql(pg_dsn, "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount int NOT NULL)")
    rng = random.Random(11)
    load.start()
    ledger_stop = threading.Event()

    def ledger() -> None:  # inserts only: a doubled apply would show as an extra row
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not ledger_stop.is_set():
                conn.execute("INSERT INTO ledger (amount) VALUES (1)")
                time.sleep(0.002)

    writer = threading.Thread(target=ledger)
    writer.start()
    kills = 0
    try:
        for _ in range(10):
            proc = _start_sync(pg_dsn, sqlite_path)
            time.sleep(rng.uniform(0.8, 3.0))
            proc.kill()
            proc.wait(timeout=30)
            kills += 1
    finally:
        ledger_stop.set()
        writer.join()
        load.stop()
    assert kills == 10
    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up"
    assert_replica_equals(pg_dsn, sqlite_path)


def test_columns_the_codec_does_not_copy_are_left_out_of_the_stream(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn, "CREATE TABLE articles (id int PRIMARY KEY, body text, tsv tsvector)",
         "INSERT INTO articles VALUES (1, 'edge sqlite', to_tsvector('edge sqlite'))")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "INSERT INTO articles VALUES (2, 'more', to_tsvector('more'))",
         "UPDATE articles SET body = 'changed', tsv = to_tsvector('changed') WHERE id = 1")
    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert not any("column-added" in f for f in report.findings)
    db = apsw.Connection(str(sqlite_path))
    assert [r[1] for r in db.execute("PRAGMA table_info(articles)")] == ["id", "body"]
    assert db.execute("SELECT id, body FROM articles ORDER BY id").fetchall() == [(1, "changed"), (2, "more")]
    db.close()


def test_server_date_and_interval_styles_do_not_change_stored_values(pg_dsn: str, sqlite_path) -> None:
    from psycopg import conninfo, sql

    dbname = conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for setting, value in (("DateStyle", "SQL, DMY"), ("TimeZone", "Asia/Kolkata"),
                               ("IntervalStyle", "sql_standard"), ("extra_float_digits", "-2")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(setting), sql.Literal(value)))
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, at timestamptz, d date, iv interval, f float8)",
         "INSERT INTO t VALUES (1, '2024-01-02 03:04:05.5+00', '2024-03-05', '1 day 02:00:00', 0.1)")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "INSERT INTO t VALUES (2, '2024-12-31 23:00:00-05', '1999-12-31', '-3 mons', 1e-7)")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    db = apsw.Connection(str(sqlite_path))
    rows = db.execute("SELECT id, at, d, f FROM t ORDER BY id").fetchall()
    db.close()
    assert rows == [(1, "2024-01-02 03:04:05.5", "2024-03-05", 0.1),
                    (2, "2025-01-01 04:00:00", "1999-12-31", 1e-7)]


def test_sigterm_during_the_snapshot_stops_cleanly_and_a_rerun_resumes(pg_dsn: str, sqlite_path) -> None:
    run_sql(pg_dsn, "CREATE TABLE big (id bigint PRIMARY KEY, body text)",
         "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 600000) g")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pg2edge", "sync", "--source", pg_dsn, "--target", str(sqlite_path)],
        env=_cli_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sqlite_path.exists() and "slot" in _state_text(sqlite_path), timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM during the snapshot" in out, out
    report = run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert report.snapshot is not None and not report.snapshot.restarted  # the keeper kept the snapshot
    assert_replica_equals(pg_dsn, sqlite_path)


def _state_text(path) -> str:
    try:
        db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return str(db.execute("SELECT group_concat(value) FROM _pg2edge_state").fetchone()[0])
        finally:
            db.close()
    except apsw.Error:
        return ""


def test_metrics_endpoint_reports_applied_changes_lag_and_queue_depths(pg_dsn: str, sqlite_path) -> None:
    import urllib.request

    from pg2edge.pgcluster import free_port
    from pg2edge.pipeline.metrics import Metrics

    run_sql(pg_dsn, "CREATE TABLE m (id int PRIMARY KEY, v text)")
    metrics = Metrics()
    port = free_port()
    metrics.serve(port)
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet, metrics=metrics)
    run_sql(pg_dsn, "INSERT INTO m SELECT g, 'x' FROM generate_series(1, 25) g", "UPDATE m SET v = 'y' WHERE id <= 5",
         "DELETE FROM m WHERE id = 25")
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet, metrics=metrics)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'pg2edge_applied_changes_total{op="c",table="public.m"} 25.0' in text
    assert 'pg2edge_applied_changes_total{op="u",table="public.m"} 5.0' in text
    assert 'pg2edge_applied_changes_total{op="d",table="public.m"} 1.0' in text
    for name in ("pg2edge_lag_seconds", "pg2edge_lag_bytes", "pg2edge_retained_wal_bytes",
                 "pg2edge_retry_queue_depth 0.0", "pg2edge_dlq_depth 0.0", "pg2edge_batch_apply_seconds_count"):
        assert name in text, name
