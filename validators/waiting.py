"""Wait until the replica covers a source LSN, or prove nothing it lacks matters.

With ``pg2edge sync`` running the replica's visible LSN passes the wanted
position within moments (heartbeats move it even when idle). Without a running
daemon the source's WAL still moves (checkpoints, other databases), so the
visible LSN may stay below while the replica is in fact complete: when the
slot is inactive the validator peeks at it (``pg_logical_slot_peek_binary_changes``,
which consumes nothing) and accepts the replica when no published row change
committed after the replica's position and up to the wanted LSN is pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pg2edge import dsn as dsnlib
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.sources.replication import slot_status
from pg2edge.pipeline.status import WaitTimeout, open_readonly, wait_for_lsn

log = logging.getLogger(__name__)

_DATA = frozenset(b"IUDT")


class ReplicaBehind(Pg2EdgeError):
    """The replica did not reach the validation LSN in time."""


@dataclass(frozen=True, slots=True)
class Reached:
    lsn: int
    how: str  # "applied": visible LSN passed it; "idle": slot inactive and nothing published is pending


def pending_changes(dsn: str, stream: state.StreamInfo, *, upto: int, after_commit: int) -> int | None:
    """Row changes in transactions committed after ``after_commit`` up to ``upto``; None if the slot is busy."""
    pub = '"' + stream.publication.replace('"', '""') + '"'
    try:
        with dsnlib.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL, "
                "'proto_version', '1', 'publication_names', %s)", (stream.slot, format_lsn(upto), pub)).fetchall()
    except psycopg.errors.ObjectInUse:
        return None
    pending = 0
    final = 0
    for (data,) in rows:
        kind = data[0]
        if kind == ord("B"):
            final = int.from_bytes(data[1:9], "big")
        elif kind in _DATA and final > after_commit:
            pending += 1
    return pending


def wait_for_replica(dsn: str, target: str | Path | Any, lsn: int, *, timeout: float) -> Reached:
    """Block until the replica covers ``lsn``; ReplicaBehind names both LSNs when it does not in time."""
    deadline = time.monotonic() + timeout
    pending: int | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            wait_for_lsn(target, lsn, timeout=max(0.0, min(remaining, 0.5)))
            return Reached(lsn, "applied")
        except WaitTimeout:
            pass
        conn = open_readonly(target)
        try:
            stream = state.read_stream(conn)
            pos = state.read_position(conn)
        finally:
            conn.close()
        if stream is not None and pos is not None:
            status = slot_status(dsn, stream.slot)
            if status is not None and not status.active:
                pending = pending_changes(dsn, stream, upto=lsn, after_commit=pos.commit_lsn)
                if pending == 0:
                    log.info("replica at %s, source snapshot at %s: slot idle, no published change pending",
                             format_lsn(pos.visible_lsn), format_lsn(lsn))
                    return Reached(lsn, "idle")
        if time.monotonic() >= deadline:
            seen = format_lsn(pos.visible_lsn) if pos else "nothing"
            more = f"; {pending} published row change(s) are not applied (is `pg2edge sync` running?)" \
                if pending else " (is `pg2edge sync` running?)"
            raise ReplicaBehind(f"replica {target} reached {seen}, not the validation LSN {format_lsn(lsn)}, "
                                f"within {timeout:g} s{more}")
