"""Status, lag and read-your-writes waits for a D1 replica, read through the Worker.

The D1 replica keeps the same state records as a SQLite file replica
(``_pg2edge_state``, ``_pg2edge_queue``), so this reads them with the same
``pipeline.state`` functions over a :class:`D1Connection`.

Read-your-writes across D1's read replicas: after a commit on PostgreSQL take
``pg_current_wal_lsn()`` and call :func:`wait_for_lsn` (``pg2edge wait``). It
reads the position on D1's primary (Sessions API constraint ``first-primary``)
and returns, once the LSN is applied, the D1 *bookmark* of that read. An
application that opens ``env.DB.withSession(bookmark)`` then reads a D1
replica at least as fresh as that LSN: the PostgreSQL LSN is the token across
the two databases, the bookmark is the same token inside D1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import D1Connection, connect, for_state
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.status import ReplicaStatus, WaitTimeout


@dataclass(frozen=True, slots=True)
class D1Reached:
    position: state.Position
    bookmark: str | None  # D1 Sessions API: env.DB.withSession(bookmark) reads at least this fresh


def d1_status(target: str, *, source: str | None = None, config_token: str | None = None) -> ReplicaStatus:
    """What the D1 replica has applied; with ``source``, the lag and the slot's retained WAL."""
    conn = connect(target, config_token=config_token)
    try:
        return status_of(conn, conn.label, source=source)
    finally:
        conn.close()


def status_of(conn: D1Connection, label: str, *, source: str | None = None) -> ReplicaStatus:
    from pg2edge.pipeline.sinks.retry import counts

    pos = state.read_position(for_state(conn))
    stream = state.read_stream(for_state(conn))
    ident = state.read_source(for_state(conn))
    run = state.read_record(for_state(conn), "snapshot", "run")
    paused = [name for name, t in state.read_tables(for_state(conn)).items() if t.paused]
    queued = counts(for_state(conn))
    status = ReplicaStatus(
        target=label, source_database=ident.database if ident else None,
        slot=stream.slot if stream else None, publication=stream.publication if stream else None,
        snapshot=run.get("status") if run else None,
        applied_lsn=format_lsn(pos.end_lsn) if pos else None, visible_lsn=format_lsn(pos.visible_lsn) if pos else None,
        last_commit_at_ms=pos.commit_ts_ms if pos else None, paused_tables=paused,
        kafka=pos.kafka if pos else None, retry_queue=queued.get("retry", 0) + queued.get("waiting", 0),
        dlq=queued.get("dead", 0))
    if source and pos:
        from pg2edge.pipeline.sources.cdc import current_wal_lsn

        now_lsn = current_wal_lsn(source)
        status.source_lsn = format_lsn(now_lsn)
        status.lag_bytes = max(0, now_lsn - pos.visible_lsn)
        if status.lag_bytes == 0:
            status.lag_seconds = 0.0
        elif pos.commit_ts_ms:
            status.lag_seconds = max(0.0, time.time() - pos.commit_ts_ms / 1000.0)
    return status


def wait_for_lsn(target: str, lsn: str | int, *, timeout: float = 30.0, poll: float = 0.05,
                 config_token: str | None = None) -> D1Reached:
    """Block until D1 (its primary) has applied everything up to ``lsn``; returns the position and bookmark."""
    wanted = parse_lsn(lsn) if isinstance(lsn, str) else lsn
    deadline = time.monotonic() + timeout
    conn = connect(target, config_token=config_token)
    try:
        while True:
            rows = conn.client.query(f"SELECT value FROM {state.STATE_TABLE} WHERE scope = 'position' "
                                     "AND name = 'applied'", bookmark="first-primary")
            pos = state.Position(**json.loads(rows.rows[0][0])) if rows.rows else None
            if pos is not None and pos.visible_lsn >= wanted:
                return D1Reached(position=pos, bookmark=rows.bookmark)
            if time.monotonic() >= deadline:
                seen = format_lsn(pos.visible_lsn) if pos else "nothing"
                raise WaitTimeout(f"replica {conn.label} reached {seen}, not {format_lsn(wanted)}, within "
                                  f"{timeout:g} s (is `pg2edge sync` running?)")
            time.sleep(poll)
    finally:
        conn.close()
