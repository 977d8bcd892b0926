"""Visible at commit, acknowledged once synced: the SQLite sink's durability rule (pipeline/sinks/walsync.py)."""

from __future__ import annotations

import time
from pathlib import Path

import apsw
import psycopg

from pg2edge.pipeline import state
from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.sinks.sqlite import SqliteSink, open_replica
from pg2edge.pipeline.sinks.walsync import WalSync


def _quiet(_: str) -> None:
    pass


def test_a_replica_commits_without_waiting_for_fsync_and_syncs_off_the_apply_path(tmp_path: Path) -> None:
    db = open_replica(tmp_path / "r.db")
    try:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL until a sink owns the file
        sink = SqliteSink(db, {}, label="r.db")
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the sink syncs the WAL itself
        assert sink.durable() is None
        first = state.Position(commit_lsn=10, end_lsn=11)
        with db:
            state.write_position(db, first)
        sink.sync.committed(first)
        second = state.Position(commit_lsn=20, end_lsn=21)
        with db:
            state.write_position(db, second)
        sink.sync.committed(second)
        assert sink.durable(wait=True) == second  # the last turn syncs what was committed
        assert sink.sync._thread is not None and not sink.sync._thread.is_alive()  # and stops the syncer
    finally:
        db.close()


def test_a_sync_error_stops_acknowledging_and_is_raised(tmp_path: Path) -> None:
    db = apsw.Connection(str(tmp_path / "r.db"))
    db.execute("PRAGMA journal_mode=WAL")
    sync = WalSync(db)
    sync.path = tmp_path / "gone" / "r.db"  # a directory that does not exist: the first sync fails
    sync.committed(state.Position(commit_lsn=1, end_lsn=2))
    try:
        sync.durable(wait=True)
    except FileNotFoundError as exc:
        assert "gone" in str(exc)
    else:
        raise AssertionError("a failed sync was reported durable")
    finally:
        db.close()


def test_the_slot_is_acknowledged_up_to_the_replica_position_when_the_daemon_stops(pg_dsn: str,
                                                                                  tmp_path: Path) -> None:
    target = tmp_path / "r.db"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    run_sync(dsn=pg_dsn, target=target, until_caught_up=True, say=_quiet)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i in range(50):
            conn.execute("INSERT INTO t VALUES (%s, 'x')", (i,))
    run_sync(dsn=pg_dsn, target=target, until_caught_up=True, say=_quiet)
    db = open_replica(target)
    try:
        pos = state.read_position(db)
        stream = state.read_stream(db)
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 50
    finally:
        db.close()
    assert pos is not None and stream is not None
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (stream.slot,)).fetchone()
    assert row is not None and parse_lsn(row[0]) >= pos.end_lsn


def test_checkpoints_run_in_the_sync_thread_and_keep_the_wal_short(tmp_path: Path) -> None:
    """No commit checkpoints inline (the automatic checkpoint would sync both files inside it); the sync thread
    checkpoints once the WAL is long, so the WAL stays near CHECKPOINT_PAGES however many commits run."""
    from pg2edge.pipeline.sinks.walsync import CHECKPOINT_PAGES

    db = open_replica(tmp_path / "r.db")
    try:
        sync = WalSync(db)
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        inline = []
        for i in range(1, 3 * CHECKPOINT_PAGES + 1):
            with db:
                db.execute("INSERT INTO blobs VALUES (?, zeroblob(?))", (i, page))
            inline.append(sync._pages)
            sync.committed(state.Position(commit_lsn=i, end_lsn=i))
            if i % 200 == 0 and sync._pages >= CHECKPOINT_PAGES:  # the sync thread's turn (a loaded machine
                deadline = time.monotonic() + 2  # may starve it a while; the WAL file keeps its largest size)
                while sync._checkpointed_at != sync._pages and time.monotonic() < deadline:
                    time.sleep(0.01)
        assert max(inline) > CHECKPOINT_PAGES  # the commits themselves never checkpointed
        sync.durable(wait=True)
        wal_pages = Path(db.filename_wal).stat().st_size // page
        assert wal_pages < 2 * CHECKPOINT_PAGES, wal_pages  # without the thread's checkpoints: > 6,000 pages
        assert db.execute("SELECT count(*) FROM blobs").fetchone()[0] == 3 * CHECKPOINT_PAGES
    finally:
        db.close()
