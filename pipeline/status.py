"""Replica status (applied LSN, lag, retained WAL) and read-your-writes waits.

An application that wrote to PostgreSQL takes ``pg_current_wal_lsn()`` after
its commit and calls :func:`wait_for_lsn` (or ``pg2edge wait``): the LSN is
the session token, like D1 bookmarks or LiteFS positions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import apsw

from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.remote import connect, is_remote, require_replica
from pg2edge.pipeline.remote.url import RemoteTarget
from pg2edge.pipeline.sinks.retry import counts
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sources.cdc import current_wal_lsn
from pg2edge.pipeline.sources.replication import slot_status
from pg2edge.pipeline.targetfile import check_existing_replica


class WaitTimeout(Pg2EdgeError):
    """The replica did not reach the LSN in time."""

    exit_code = 1


@dataclass
class ReplicaStatus:
    target: str
    source_database: str | None
    slot: str | None
    publication: str | None
    snapshot: str | None
    applied_lsn: str | None
    visible_lsn: str | None
    last_commit_at_ms: int | None
    source_lsn: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    retained_wal_bytes: int | None = None
    paused_tables: list[str] | None = None
    kafka: dict[str, Any] | None = None  # topic, partition, offset of the last applied record
    retry_queue: int = 0  # changes waiting for a retry (pipeline.retry)
    dlq: int = 0  # changes in the dead-letter queue
    schema_capture: str | None = None  # "event-triggers" or "fallback" (pipeline/ddl_capture.py)
    resync_pending: list[str] | None = None  # tables waiting for a re-copy, with their buffered changes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def open_readonly(target: str | Path | RemoteTarget) -> Any:
    """A read connection to a replica: apsw on a file, a RemoteConnection (Hrana) on a libSQL URL, a
    D1Connection (the pg2edge Worker) on a d1+ URL.

    Both answer ``execute(sql, params)``, so the state and queue readers take either.
    A remote database pg2edge never wrote is refused by name.
    """

    if is_remote(target):
        remote = connect(target if isinstance(target, RemoteTarget) else str(target))
        try:
            require_replica(remote)
        except BaseException:
            remote.close()
            raise
        return remote
    check_existing_replica(str(target))  # missing, garbage, truncated or not a replica: one error naming it
    conn = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
    conn.setbusytimeout(5000)
    return conn


_open_readonly = open_readonly


def open_writable(target: str | Path | RemoteTarget) -> Any:
    """A connection for state records (``with conn:`` + ``state.write_record``): the replica file opened
    read-write, or a RemoteConnection (its writes sent as one atomic batch at commit)."""

    if is_remote(target):
        return open_readonly(target)  # a RemoteConnection: reads at once, writes batched until COMMIT

    return open_replica(str(target))


def read_position(target: str | Path | RemoteTarget) -> state.Position | None:
    conn = _open_readonly(target)
    try:
        return state.read_position(conn)
    finally:
        conn.close()


def replica_status(target: str | Path | RemoteTarget, *, source: str | None = None) -> ReplicaStatus:
    """What the replica has applied; with ``source``, the lag and the slot's retained WAL."""
    conn = _open_readonly(target)
    try:
        pos = state.read_position(conn)
        stream = state.read_stream(conn)
        ident = state.read_source(conn)
        run = state.read_run(conn)
        paused = [name for name, t in state.read_tables(conn).items() if t.paused]

        queued = counts(conn)
        from pg2edge.pipeline.ddl_capture import capture_mode
        from pg2edge.pipeline.resync import describe_pending

        capture, resyncs = capture_mode(conn), describe_pending(conn)
    finally:
        conn.close()
    status = ReplicaStatus(
        target=str(target), source_database=ident.database if ident else None,
        slot=stream.slot if stream else None, publication=stream.publication if stream else None,
        snapshot=run.status.value if run else None,
        applied_lsn=format_lsn(pos.end_lsn) if pos else None,
        visible_lsn=format_lsn(pos.visible_lsn) if pos else None,
        last_commit_at_ms=pos.commit_ts_ms if pos else None, paused_tables=paused,
        kafka=pos.kafka if pos else None, retry_queue=queued.get("retry", 0) + queued.get("waiting", 0),
        dlq=queued.get("dead", 0), schema_capture=capture, resync_pending=resyncs)
    if source and pos:

        now_lsn = current_wal_lsn(source)
        status.source_lsn = format_lsn(now_lsn)
        status.lag_bytes = max(0, now_lsn - pos.visible_lsn)
        if status.lag_bytes == 0:
            status.lag_seconds = 0.0
        elif pos.commit_ts_ms:
            status.lag_seconds = max(0.0, time.time() - pos.commit_ts_ms / 1000.0)
        if stream:
            slot = slot_status(source, stream.slot)
            status.retained_wal_bytes = slot.retained_wal_bytes if slot else None
    return status


def wait_for_lsn(target: str | Path | RemoteTarget, lsn: str | int, *, timeout: float = 30.0,
                 poll: float = 0.01) -> state.Position:
    """Block until the replica has applied everything up to ``lsn``; WaitTimeout names both LSNs.

    On a remote target each poll is one HTTP read (at most every 50 ms)."""

    wanted = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    deadline = time.monotonic() + timeout
    if is_remote(target):
        poll = max(poll, 0.05)
    conn = _open_readonly(target)
    try:
        while True:
            pos = state.read_position(conn)
            if pos is not None and pos.visible_lsn >= wanted:
                return pos
            if time.monotonic() >= deadline:
                seen = format_lsn(pos.visible_lsn) if pos else "nothing"
                raise WaitTimeout(f"replica {target} reached {seen}, not {format_lsn(wanted)}, within {timeout:g} s "
                                  "(is `pg2edge sync` running?)")
            time.sleep(poll)
    finally:
        conn.close()
