"""Operator actions on the dead-letter queue of a SQLite replica (``pg2edge dlq replay``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pg2edge.config import TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.sinks.libsql import open_remote_sink
from pg2edge.pipeline.sinks.retry import QueuedChange, QueueError, QueueStatus, RetryPolicy, get_change, list_queue
from pg2edge.pipeline.sinks.sqlite import SqliteSink, open_replica


def replay(sink: SqliteSink, *, ids: Sequence[int] | None = None) -> tuple[int, list[QueuedChange]]:
    """Apply dead changes (``ids``, default all) and what queued behind them, in order.

    Returns (changes applied, dead changes left). A change that fails again stays in the DLQ.
    """
    dead = [c.id for c in list_queue(sink.conn, statuses=(QueueStatus.DEAD.value,))]
    wanted = dead if ids is None else list(ids)
    for i in wanted:
        if i not in dead:
            get_change(sink.conn, i)  # raises for an unknown id
            raise QueueError(f"change {i} is not in the DLQ")
    applied, _ = sink.drain(force_ids=wanted)
    left = [c for c in list_queue(sink.conn, statuses=(QueueStatus.DEAD.value,)) if c.id in set(wanted)]
    return applied, left


def replay_dlq(*, target: Any, dsn: str, ids: Sequence[int] | None = None, options: TranslateConfig | None = None,
               policy: RetryPolicy | None = None) -> tuple[int, list[QueuedChange]]:
    """Open the replica, encode with the source's codec, and :func:`replay` its dead changes."""

    if is_remote(target) and getattr(target, "kind", None) == "d1":  # the queue inside D1 (pipeline.d1)
        from pg2edge.pipeline.d1.daemon import replay_dlq as replay_d1

        return replay_d1(dsn=dsn, target=target, ids=ids, options=options, policy=policy)
    if is_remote(target):

        sink = open_remote_sink(target, dsn=dsn, options=options or TranslateConfig(), policy=policy)
        try:
            return replay(sink, ids=ids)  # type: ignore[arg-type]
        finally:
            sink.close()
    conn = open_replica(target)
    try:
        names = state.read_stream(conn)
        if names is None:
            raise QueueError(f"replica {target} has no recorded publication; nothing was ever synced")
        mappings = build_mappings(dsn, conn, names.publication, options or TranslateConfig())
        return replay(SqliteSink(conn, mappings, label=str(target), policy=policy), ids=ids)
    finally:
        conn.close()
