"""The continuous sync daemon: snapshot if needed, then stream changes into the replica.

Order of a cycle: take whole transactions from the slot, apply them in one
SQLite transaction (data + position), then acknowledge their end LSN to
PostgreSQL. Heartbeats (``pg_logical_emit_message``) every
``heartbeat_interval`` seconds keep an idle publication from pinning WAL and
move the replica's watermark, which ``wait_for_lsn`` and ``--until-caught-up``
read. SIGTERM/SIGINT finish the current batch, acknowledge it and return.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.applier import TableMapping, open_replica
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.replication import ReplicationStream, slot_status
from pg2edge.pipeline.snapshot import SnapshotReport, prepare_tables, published_tables, run_snapshot
from pg2edge.pipeline.source import CdcSource

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "pg2edge.heartbeat"
RETAINED_WAL_WARN_BYTES = 1024**3


@dataclass
class SyncReport:
    snapshot: SnapshotReport | None = None
    transactions: int = 0
    rows: int = 0
    position: state.Position | None = None
    stopped_by: str = "caught up"
    findings: list[str] = field(default_factory=list)
    retained_wal_bytes: int | None = None


class Heartbeater:
    """Emits heartbeat messages on one kept connection; a lost connection is reopened next time."""

    def __init__(self, dsn: str, *, interval: float = 1.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self._conn: Any = None
        self._last = 0.0

    def maybe_beat(self) -> int | None:
        """Beat when ``interval`` seconds have passed since the last beat (the stream loops call this)."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return None
        self._last = now
        return self.beat()

    def beat(self) -> int | None:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = dsnlib.connect(self.dsn, autocommit=True)
            row = self._conn.execute("SELECT pg_logical_emit_message(false, %s, 'beat')::text",
                                     (HEARTBEAT_PREFIX,)).fetchone()
            return parse_lsn(row[0]) if row else None
        except (psycopg.OperationalError, Pg2EdgeError) as exc:
            log.warning("heartbeat not sent (%s); retrying at the next interval", exc)
            self.close()
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def current_wal_lsn(dsn: str) -> int:
    with dsnlib.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(row[0])


class _TableEncoder:
    """A table's codec that rebuilds itself when the source gained a column (ADD COLUMN while streaming)."""

    def __init__(self, dsn: str, table: Any, options: TranslateConfig) -> None:
        from pg2edge.translators.codec import row_codec

        self.dsn, self.table, self.options = dsn, table, options
        self.codec = row_codec(table, options=options)

    def _refresh(self) -> None:
        from pg2edge.translators.codec import row_codec
        from pg2edge.translators.introspect import introspect

        with dsnlib.connect(self.dsn, autocommit=True) as conn:
            schema = introspect(conn, schemas=[self.table.schema], tables=[self.table.name])
        self.table = schema.table(self.table.qualified)
        self.codec = row_codec(self.table, options=self.options)

    def encode(self, column: str, text: str | None) -> Any:
        if column not in self.codec.rules:
            self._refresh()
        return self.codec.encode_text(column, text)

    def skip(self, column: str) -> bool:
        """A column the codec does not copy (its rule says so); unknown columns are new, not skipped."""
        return column in self.codec.skipped

    def column_type(self, column: Any) -> str:
        return self.codec.sqlite_type_for_relation_column(column)


def build_mappings(dsn: str, db: Any, publication: str, options: TranslateConfig) -> dict[tuple[str, str], TableMapping]:
    """Source (schema, table) -> target table and codec encoder, for every published table."""
    from pg2edge.translators.naming import sqlite_table_name

    model = prepare_tables(dsn, db, published_tables(dsn, publication), options=options, say=log.info)
    out = {}
    for table in model.values():
        enc = _TableEncoder(dsn, table, options)
        out[(table.schema, table.name)] = TableMapping(
            target=sqlite_table_name(table.schema, table.name), encode=enc.encode, column_type=enc.column_type,
            skip=enc.skip)
    return out


class SnapshotInterrupted(Exception):
    """SIGTERM/SIGINT arrived while the snapshot was copying (a rerun resumes it)."""


class StopFlag:
    """Set by SIGTERM/SIGINT. While ``interrupt_now`` (the snapshot), the signal also raises
    SnapshotInterrupted so a long copy stops at once; the keeper holds the snapshot for a rerun."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event or threading.Event()
        self.reason = ""
        self.interrupt_now = False

    def stop_reason(self, *, caught_up: bool) -> str | None:
        """Why a stream loop should stop now ("caught up", the signal's name), or None to go on."""
        if caught_up:
            return "caught up"
        if self.event.is_set():
            return self.reason or "stop requested"
        return None

    def install(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, _frame: Any) -> None:
            self.reason = signal.Signals(signum).name
            self.event.set()
            if self.interrupt_now:
                raise SnapshotInterrupted(self.reason)

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


DAEMON_SCOPE = "daemon"
PID_RECORD = "pid"


def _record_pid(db: Any, *, running: bool) -> None:
    """Keep ``daemon/pid``: the pid of the running sync (null once it stopped)."""
    import os

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with db:
        state.write_record(db, DAEMON_SCOPE, PID_RECORD, {"pid": os.getpid() if running else None,
                                                          "started_at" if running else "stopped_at": now})


def run_sync(*, dsn: str, target: str | Path, tables: str | Sequence[str] | None = None, jobs: int = 2,
             options: TranslateConfig | None = None, until_caught_up: bool = False,
             heartbeat_interval: float = 1.0, retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES,
             allow_replica_identity_full: bool = False, stop: threading.Event | None = None,
             say: Callable[[str], None] = print, max_wait: float = 0.2,
             on_batch: Callable[[Any], None] | None = None, metrics: Any = None,
             policy: Any = None) -> SyncReport:
    """Snapshot if needed, then stream until stopped (or caught up with ``until_caught_up``)."""
    options = options or TranslateConfig()
    report = SyncReport()
    flag = StopFlag(stop)
    restore = flag.install()  # before the snapshot: a signal never kills the process half-way
    flag.interrupt_now = True
    try:
        report.snapshot = run_snapshot(dsn=dsn, target=target, tables=tables, jobs=jobs, options=options,
                                       allow_replica_identity_full=allow_replica_identity_full, say=say)
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
        from pg2edge.pipeline.retry import QueueingApplier
        from pg2edge.pipeline.retry import counts as retry_counts

        applier = QueueingApplier(db, build_mappings(dsn, db, names.publication, options), policy=policy)
        goal = current_wal_lsn(dsn) if until_caught_up else None
        stream = ReplicationStream(dsn, slot=names.slot, publications=[names.publication], start_lsn=pos.end_lsn)
        source = CdcSource(stream)
        heart = Heartbeater(dsn, interval=heartbeat_interval)
        last_slot_check = 0.0
        try:
            while True:
                now = time.monotonic()
                heart.maybe_beat()
                batch = source.batch(max_wait=max_wait)
                if batch:
                    t0 = time.perf_counter()
                    result = applier.apply(batch)
                    if metrics is not None:
                        metrics.record_batch(batch, time.perf_counter() - t0)
                        metrics.record_queue(retry_counts(db))
                    if result.position is not None:
                        source.ack(result.position.end_lsn)
                    report.transactions += result.applied
                    report.rows += result.rows
                    report.findings += [str(f) for f in result.findings]
                    for finding in result.findings:
                        say(f"finding: {finding}")
                    if on_batch:
                        on_batch(result)
                due = applier.next_due()
                if due is not None and due <= time.time():
                    applier.drain()  # parked changes whose back-off elapsed (pipeline.retry)
                beat = source.ack_heartbeat()
                if beat is not None:
                    state.advance_watermark(db, beat)
                if now - last_slot_check >= 10.0:
                    last_slot_check = now
                    status = slot_status(dsn, names.slot)
                    if status is not None:
                        report.retained_wal_bytes = status.retained_wal_bytes
                        if metrics is not None:
                            metrics.retained_wal.set(status.retained_wal_bytes)
                        if status.retained_wal_bytes > retained_wal_warn_bytes:
                            log.warning("slot %s retains %d bytes of WAL on the source (threshold %d)",
                                        names.slot, status.retained_wal_bytes, retained_wal_warn_bytes)
                current = state.read_position(db)
                if metrics is not None and current is not None:
                    metrics.record_lag(reached_lsn=current.visible_lsn, server_wal_end=stream.server_wal_end,
                                       commit_end_lsn=current.end_lsn, commit_ts_ms=current.commit_ts_ms)
                reason = flag.stop_reason(caught_up=goal is not None and current is not None
                                          and current.visible_lsn >= goal)
                if reason:
                    report.stopped_by = reason
                    break
        finally:
            heart.close()
            source.close()
        report.position = state.read_position(db)
        return report
    finally:
        restore()
        _record_pid(db, running=False)
        db.close()
