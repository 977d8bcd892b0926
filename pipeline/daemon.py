"""The continuous sync daemon: snapshot if needed, then stream changes into the replica.

Order of a cycle: take whole transactions from the slot, apply them in one
SQLite transaction (data + position), then acknowledge their end LSN to
PostgreSQL. Heartbeats (``pg_logical_emit_message``) every
``heartbeat_interval`` seconds keep an idle publication from pinning WAL and
move the replica's watermark, which ``wait_for_lsn`` and ``--until-caught-up``
read. SIGTERM/SIGINT finish the current batch, acknowledge it and return.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.ddl_capture import FALLBACK, capture_mode
from pg2edge.pipeline.engine import EngineReport, SnapshotInterrupted, StopFlag
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.mappings import build_mappings, mapping_for
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.remote import RemoteTarget, is_remote, parse_target
from pg2edge.pipeline.resync import AutoResync
from pg2edge.pipeline.schema_model import align_mappings
from pg2edge.pipeline.sinks.base import ApplyResult, Sink
from pg2edge.pipeline.sinks.libsql import run_remote_sync
from pg2edge.pipeline.sinks.retry import RetryPolicy
from pg2edge.pipeline.sinks.sqlite import SqliteSink, open_replica
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.cdc import RETAINED_WAL_WARN_BYTES, CdcSource, stream_slot
from pg2edge.pipeline.sources.snapshot import SnapshotReport, run_snapshot


@dataclass
class SyncReport(EngineReport):
    snapshot: SnapshotReport | None = None


DAEMON_SCOPE = "daemon"
PID_RECORD = "pid"


def _record_pid(db: apsw.Connection, *, running: bool) -> None:
    """Keep ``daemon/pid``: the pid and host of the running sync (null once it stopped). A remote replica
    is reachable from other hosts: ``cutover promote`` signals the pid only on the host that runs it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with db:
        state.write_record(db, DAEMON_SCOPE, PID_RECORD, {"pid": os.getpid() if running else None,
                                                          "host": socket.gethostname(),
                                                          "started_at" if running else "stopped_at": now})


@dataclass
class RemoteSyncTarget:
    """What a remote target (libSQL: ``pipeline/sinks/libsql.py``, D1: ``pipeline/d1/daemon.py``) plugs into
    :func:`sync_remote`; the rest of ``pg2edge sync --target URL`` is the same for every remote."""

    db: apsw.Connection  # the target's state, connection-shaped (pipeline.state reads and writes it)
    snapshot: Callable[[], SnapshotReport | None]  # snapshot if needed, and say so; None: nothing was asked
    mappings: Callable[[str], dict[tuple[str, str], TableMapping]]  # publication -> the codec mappings
    sink: Callable[[dict[tuple[str, str], TableMapping]], Sink]
    no_replica: Callable[[], Exception]  # the error when the target holds no finished snapshot
    close: Callable[[], None]


def sync_remote(target: RemoteSyncTarget, *, dsn: str, until_caught_up: bool = False,
                heartbeat_interval: float = 1.0, retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES,
                stop: threading.Event | None = None, say: Callable[[str], None] = print, max_wait: float = 0.2,
                on_batch: Callable[[ApplyResult], None] | None = None, metrics: Metrics | None = None) -> SyncReport:
    """A remote target's sync: its snapshot if needed (a signal stops it, a rerun resumes), then the engine
    from the target's position into its sink until stopped (or caught up); closes the target at the end."""
    report = SyncReport()
    flag = StopFlag(stop)
    restore = flag.install()  # a signal never kills the process half-way through a request
    try:
        flag.interrupt_now = True
        try:
            report.snapshot = target.snapshot()
        except SnapshotInterrupted as exc:
            report.stopped_by = f"{exc} during the snapshot (a rerun resumes it)"
            return report
        finally:
            flag.interrupt_now = False
        db = target.db
        names = state.read_stream(db)
        pos = state.read_position(db)
        if names is None or pos is None:
            raise target.no_replica()
        # names and shapes at the replica's position; the baselines' attribute numbers tell a RENAME from a
        # DROP + ADD (schema changes while syncing: pipeline/schema_apply.py)
        sink = target.sink(align_mappings(dsn, db, target.mappings(names.publication)))
        _record_pid(db, running=True)  # `pg2edge cutover promote` stops this daemon by its pid
        try:
            return stream_slot(dsn, names, pos.end_lsn, sink, flag=flag, report=report,
                               heartbeat_interval=heartbeat_interval, until_caught_up=until_caught_up,
                               retained_wal_warn_bytes=retained_wal_warn_bytes, max_wait=max_wait,
                               metrics=metrics, say=say, on_batch=on_batch)
        finally:
            _record_pid(db, running=False)
    finally:
        restore()
        target.close()


def _describe_one(dsn: str, table: tuple[str, str]) -> dict[str, Any]:
    """Fallback mode: the catalog description of one source table, read now."""
    from pg2edge.pipeline.ddl_capture import describe_tables

    with dsnlib.control(dsn) as conn:
        row = conn.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relname = %s", table).fetchone()
        return describe_tables(conn, [int(row[0])] if row else [])


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_sync(*, dsn: str, target: str | Path, tables: str | Sequence[str] | None = None, jobs: int = 2,
             options: TranslateConfig | None = None, until_caught_up: bool = False,
             heartbeat_interval: float = 1.0, retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES,
             allow_replica_identity_full: bool = False, stop: threading.Event | None = None,
             say: Callable[[str], None] = print, max_wait: float = 0.2,
             on_batch: Callable[[ApplyResult], None] | None = None, metrics: Metrics | None = None,
             policy: RetryPolicy | None = None, snapshot_path: str | None = None,
             on_progress: Callable[[Any, int], None] | None = None) -> SyncReport:
    """Snapshot if needed, then stream until stopped (or caught up with ``until_caught_up``):
    the engine pairing a :class:`CdcSource` with a :class:`SqliteSink` (a remote URL: the libSQL sink,
    whose snapshot takes ``snapshot_path``: direct or staged, see ``pipeline.sinks.libsql``)."""

    if is_remote(target):
        remote = target if isinstance(target, RemoteTarget) else parse_target(str(target))
        if remote.kind == "d1":  # the pg2edge D1 Worker (pipeline.d1)
            from pg2edge.pipeline.d1.daemon import run_sync_d1  # here: pipeline.d1.daemon imports this module

            return run_sync_d1(
                dsn=dsn, target=remote, tables=tables, jobs=jobs, options=options, until_caught_up=until_caught_up,
                heartbeat_interval=heartbeat_interval, retained_wal_warn_bytes=retained_wal_warn_bytes,
                allow_replica_identity_full=allow_replica_identity_full, stop=stop, say=say, max_wait=max_wait,
                on_batch=on_batch, metrics=metrics, policy=policy)
        return run_remote_sync(
            dsn=dsn, target=remote, tables=tables, jobs=jobs, options=options, until_caught_up=until_caught_up,
            heartbeat_interval=heartbeat_interval, retained_wal_warn_bytes=retained_wal_warn_bytes,
            allow_replica_identity_full=allow_replica_identity_full, stop=stop, say=say, max_wait=max_wait,
            on_batch=on_batch, metrics=metrics, policy=policy, snapshot_path=snapshot_path, on_progress=on_progress)
    options = options or TranslateConfig()
    report = SyncReport()
    flag = StopFlag(stop)
    restore = flag.install()  # before the snapshot: a signal never kills the process half-way
    flag.interrupt_now = True
    try:
        report.snapshot = run_snapshot(dsn=dsn, target=target, tables=tables, jobs=jobs, options=options,
                                       allow_replica_identity_full=allow_replica_identity_full, say=say,
                                       on_progress=on_progress)
    except SnapshotInterrupted as exc:
        restore()
        report.stopped_by = f"{exc} during the snapshot (a rerun resumes it)"
        return report
    except BaseException:
        restore()
        raise
    finally:
        flag.interrupt_now = False
    if not report.snapshot.already_complete:
        say(f"snapshot: {report.snapshot.rows} rows in {len(report.snapshot.tables)} tables "
            f"({report.snapshot.seconds:.1f} s); streaming from {format_lsn(report.snapshot.consistent_lsn)}")
    db = open_replica(target)
    _record_pid(db, running=True)  # `pg2edge cutover promote` stops this daemon by its pid
    try:
        names = state.read_stream(db)
        pos = state.read_position(db)
        assert names is not None and pos is not None
        # names and shapes at the replica's position (not the source's current ones); the baselines'
        # attribute numbers tell a RENAME from a DROP + ADD
        mappings = align_mappings(dsn, db, build_mappings(dsn, db, names.publication, options))
        sink = SqliteSink(db, mappings, label=str(target), policy=policy, options=options)
        fallback = capture_mode(db) == FALLBACK
        if sink.applier is not None:
            sink.applier.mapping_for = functools.partial(mapping_for, dsn, options=options)
            if fallback:
                sink.applier.describe_source = functools.partial(_describe_one, dsn)

        watched = [(q.split(".", 1)[0], q.split(".", 1)[1]) for q in state.read_tables(db)]  # the replica's names

        def resyncing(source: CdcSource) -> AutoResync:  # re-copies what a schema change asks for
            return AutoResync(source, dsn=dsn, target=target, db=db, options=options, say=say,
                              watch=watched if fallback else ())

        return stream_slot(dsn, names, pos.end_lsn, sink, flag=flag, report=report,
                           heartbeat_interval=heartbeat_interval, until_caught_up=until_caught_up,
                           retained_wal_warn_bytes=retained_wal_warn_bytes, max_wait=max_wait, metrics=metrics,
                           say=say, on_batch=on_batch, wrap=resyncing)
    finally:
        restore()
        _record_pid(db, running=False)
        db.close()
