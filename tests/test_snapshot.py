"""Snapshot against a real PostgreSQL into real SQLite files: consistent, resumable, safe on the source."""

from __future__ import annotations

import os
import signal

import apsw
import psycopg
import pytest

from pg2edge import sample
from pg2edge.pipeline import state
from pg2edge.pipeline.sources import keeper
from pg2edge.pipeline.sources.snapshot import run_snapshot
from tests.support.replica import assert_replica_equals
from tests.support.writeload import WriteLoad


def _quiet(_: str) -> None:
    pass


def test_snapshot_copies_the_sample_shop(pg_dsn: str, sqlite_path) -> None:
    counts = sample.install(pg_dsn)
    report = run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=2, say=_quiet)
    assert report.tables == {f"public.{t}": n for t, n in counts.items()}
    assert_replica_equals(pg_dsn, sqlite_path)
    db = apsw.Connection(str(sqlite_path))
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    pos = state.read_position(db)
    assert pos is not None and pos.end_lsn == report.consistent_lsn
    assert all(t.snapshot == "done" for t in state.read_tables(db).values())
    db.close()
    again = run_snapshot(dsn=pg_dsn, target=sqlite_path, say=_quiet)
    assert again.already_complete


def test_snapshot_names_every_source_change_and_teardown_undoes_them(pg_dsn: str, sqlite_path, run_cli) -> None:
    sample.install(pg_dsn)
    result = run_cli("snapshot", "--source", pg_dsn, "--target", str(sqlite_path), "--tables", "product*,categories")
    assert result.returncode == 0, result.stderr
    assert "source change: create publication" in result.stdout and "replication slot" in result.stdout
    assert "not replicated: public.orders: not selected by --tables" in result.stdout
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (1,)
    result = run_cli("teardown", "--source", pg_dsn, "--target", str(sqlite_path))
    assert result.returncode == 0, result.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)


def test_table_without_key_is_refused_by_name_and_source_writes_keep_working(pg_dsn: str, sqlite_path, run_cli) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE events_nokey (at timestamptz, what text)")
        conn.execute("CREATE TABLE good (id int PRIMARY KEY)")
    result = run_cli("snapshot", "--source", pg_dsn, "--target", str(sqlite_path), "--tables", "events_nokey,good")
    assert result.returncode == 2
    assert "public.events_nokey" in result.stderr and "primary key" in result.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO events_nokey VALUES (now(), 'x')")
        conn.execute("UPDATE events_nokey SET what = 'y'")
        conn.execute("DELETE FROM events_nokey")
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)


def test_rows_written_during_the_snapshot_land_exactly_once(pg_dsn: str, sqlite_path) -> None:
    from pg2edge.pipeline.daemon import run_sync

    sample.install(pg_dsn)
    load = WriteLoad(pg_dsn, "load")
    load.create_table()
    load.start()
    try:
        run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=2, say=_quiet)
        run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    finally:
        commits = load.stop()
    assert commits > 0
    run_sync(dsn=pg_dsn, target=sqlite_path, until_caught_up=True, say=_quiet)
    assert_replica_equals(pg_dsn, sqlite_path)


class Crash(Exception):
    pass


def _crash_after(table: str, rows: int):
    seen = {"n": 0}

    def progress(spec, n: int) -> None:
        if spec.label == table:
            seen["n"] += n
            if seen["n"] >= rows:
                raise Crash(table)

    return progress


def _big_sample(dsn: str) -> None:
    sample.install(dsn, size=sample.SampleSize(audit_logs=30_000))


def test_rerun_after_a_crash_skips_finished_tables(pg_dsn: str, sqlite_path) -> None:
    _big_sample(pg_dsn)
    with pytest.raises(Crash):
        run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=1, say=_quiet,
                     on_progress=_crash_after("public.products", 1))
    messages: list[str] = []
    report = run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=1, say=messages.append)
    assert "public.audit_logs" in report.skipped_done  # the biggest table is copied first
    assert not report.restarted and any("resuming snapshot" in m for m in messages)
    assert_replica_equals(pg_dsn, sqlite_path)


def test_when_the_exported_snapshot_is_gone_a_clean_snapshot_starts(pg_dsn: str, sqlite_path) -> None:
    _big_sample(pg_dsn)
    with pytest.raises(Crash):
        run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=1, say=_quiet,
                     on_progress=_crash_after("public.products", 1))
    db = apsw.Connection(str(sqlite_path))
    run = state.read_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME)
    db.close()
    os.kill(int(run["keeper_pid"]), signal.SIGKILL)  # the snapshot dies with its keeper
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO categories (slug, name) VALUES ('late', 'Late')")
    messages: list[str] = []
    report = run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=1, say=messages.append)
    assert report.restarted and any("starting a clean new snapshot" in m for m in messages)
    assert_replica_equals(pg_dsn, sqlite_path)


def test_a_big_table_is_copied_in_key_range_slices_by_several_workers(pg_dsn: str, sqlite_path) -> None:
    from pg2edge.pipeline.sources.snapshot import SPLIT_ROWS, key_slices
    from pg2edge.translators.introspect import introspect

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide (id bigint PRIMARY KEY, v text)")
        conn.execute("INSERT INTO wide SELECT g * 3 - 1000, 'v' || g FROM generate_series(1, %s) g", (SPLIT_ROWS + 1000,))
        conn.execute("ANALYZE wide")
        table = introspect(conn, tables=["wide"]).table("wide")
    slices = key_slices(pg_dsn, table, jobs=2, estimated_rows=SPLIT_ROWS + 1000)
    assert len(slices) == 2 and slices[0][1] is None and slices[-1][2] is None  # open ends: nothing left out
    report = run_snapshot(dsn=pg_dsn, target=sqlite_path, jobs=2, say=_quiet)
    assert report.tables == {"public.wide": SPLIT_ROWS + 1000}
    assert_replica_equals(pg_dsn, sqlite_path)


def test_a_copy_worker_error_is_one_line_naming_the_column_and_exit_2(pg_dsn: str, tmp_path, run_cli) -> None:
    """inexact = "raise", numeric as REAL and a NaN numeric: the copy worker's CodecError reaches the CLI as one line, exit 2."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE prices (id int PRIMARY KEY, amount numeric)")
        conn.execute("INSERT INTO prices VALUES (1, 1.5), (2, 'NaN')")
    (tmp_path / "pg2edge.toml").write_text('[translate]\ninexact = "raise"\nnumeric = "real"\n')
    done = run_cli("snapshot", "--config", str(tmp_path / "pg2edge.toml"), "--source", pg_dsn,
                   "--target", str(tmp_path / "r.db"))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "prices" in lines[0] and "amount" in lines[0], lines[0]
