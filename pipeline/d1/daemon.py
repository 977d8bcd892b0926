"""``pg2edge sync --target d1+https://HOST``: snapshot into D1 if needed, then stream changes into it.

1. **Snapshot.** When D1 holds no position yet, the normal snapshot (slot with
   an exported snapshot, parallel copy, resumable) is taken into a local
   staging file (``$PG2EDGE_STAGING_DIR``, default ``~/.cache/pg2edge/staging/``,
   as for libSQL targets; removed once D1 holds everything), then loaded into
   D1 by :func:`pipeline.d1.upload.upload_snapshot`: checked against D1's
   limits first, batched, resumable, position last.
2. **Stream.** ``sources.cdc.stream_slot`` runs the engine with a
   :class:`CdcSource` from D1's position into a :class:`D1Sink`: each batch of whole source transactions and its position
   in one D1 ``batch()``, acknowledged to PostgreSQL only after the Worker
   answered. The Worker being down or restarting is retried in place by the
   shared remote session (connection refused, 5xx, timeouts) for
   ``retry_for`` seconds; lost answers are never applied twice (position guard).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import D1Client, D1Connection, for_state
from pg2edge.pipeline.d1.errors import D1Error
from pg2edge.pipeline.d1.guards import schema_statements
from pg2edge.pipeline.d1.limits import DEFAULT_LIMITS, D1Limits, check_columns
from pg2edge.pipeline.d1.upload import upload_snapshot
from pg2edge.pipeline.daemon import RemoteSyncTarget, SyncReport, sync_remote
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.publication import resolve_tables
from pg2edge.pipeline.remote.http import RetryPolicy as HttpRetry
from pg2edge.pipeline.remote.url import RemoteTarget, parse_target
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.d1 import D1Sink
from pg2edge.pipeline.sinks.libsql import staging_path
from pg2edge.pipeline.sinks.retry import QueuedChange, QueueError, RetryPolicy, list_queue
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.cdc import RETAINED_WAL_WARN_BYTES
from pg2edge.pipeline.sources.snapshot import SnapshotReport, run_snapshot
from pg2edge.translators.codec import row_codec
from pg2edge.translators.introspect import introspect


def is_d1_target(target: object) -> bool:
    return str(target).lower().startswith(("d1+https://", "d1+http://"))


def check_source_tables(dsn: str, tables: str | Sequence[str] | None, *, options: TranslateConfig,
                        limits: D1Limits = DEFAULT_LIMITS, allow_replica_identity_full: bool = False) -> None:
    """Before the snapshot touches the source: refuse, by name, a selected table D1 cannot hold (columns)."""
    with dsnlib.connect(dsn, autocommit=True) as pg:
        selection = resolve_tables(pg, tables, allow_replica_identity_full=allow_replica_identity_full)
        chosen = [(t.schema, t.name) for t in selection.tables]
        if not chosen:
            return
        schema = introspect(pg, schemas=sorted({s for s, _ in chosen}), tables=[n for _, n in chosen])
    for table in schema.tables:
        check_columns(table.name if table.schema == "public" else table.qualified,
                      len(row_codec(table, options=options).columns), limits=limits)


def replay_dlq(*, dsn: str, target: str | RemoteTarget, ids: Sequence[int] | None = None, options: TranslateConfig | None = None,
               config_token: str | None = None, policy: RetryPolicy | None = None) -> tuple[int, list[QueuedChange]]:
    """``pg2edge dlq replay`` for D1: apply dead changes (``ids``, default all) and what waits behind them,
    in order, each in its own D1 batch with its removal from the queue. Returns (applied, dead left)."""
    sink = open_d1_sink(target, dsn=dsn, options=options, config_token=config_token, policy=policy)
    try:
        conn = sink._state
        dead = [c.id for c in list_queue(conn, statuses=("dead",))]
        wanted = dead if ids is None else list(ids)
        unknown = [i for i in wanted if i not in dead]
        if unknown:
            raise QueueError(f"change {unknown[0]} is not in the DLQ of {sink.label}")
        applied, _ = sink.drain(force_ids=wanted)
        return applied, [c for c in list_queue(conn, statuses=("dead",)) if c.id in set(wanted)]
    finally:
        sink.close()


def open_d1_sink(target: str | RemoteTarget, *, dsn: str, options: TranslateConfig | None = None,
                 config_token: str | None = None, policy: RetryPolicy | None = None) -> D1Sink:
    """A D1Sink on an existing D1 replica (its publication's tables and codecs): ``dlq replay``, repairs."""
    parsed = target if isinstance(target, RemoteTarget) else parse_target(target, config_token=config_token)
    client = D1Client(parsed)
    try:
        names = state.read_stream(for_state(D1Connection(client)))
        if names is None:
            raise D1Error(f"target {parsed.label} has no recorded publication; nothing was ever synced")
        shapes = apsw.Connection(":memory:")  # the translated tables, to build the codec mappings with
        mappings = build_mappings(dsn, shapes, names.publication, options or TranslateConfig())
        shapes.close()
        return D1Sink(client, mappings, policy=policy)
    except BaseException:
        client.close()
        raise


def snapshot_into_d1(*, dsn: str, client: D1Client, say: Callable[[str], None] = print,
                     staging: str | Path | None = None, limits: D1Limits = DEFAULT_LIMITS,
                     tables: str | Sequence[str] | None = None, jobs: int = 2, options: TranslateConfig | None = None,
                     allow_replica_identity_full: bool = False) -> SnapshotReport:
    """The snapshot of a D1 target: checked against D1's limits, taken into a staging file, loaded into D1
    (the staging file removed once D1 holds everything). Both halves resume; a D1 that already holds a
    position is left alone (``already_complete``)."""
    options = options or TranslateConfig()
    client.batch(schema_statements())
    if state.read_position(for_state(D1Connection(client))) is not None:
        return SnapshotReport(slot="", publication="", consistent_lsn=0, already_complete=True)
    check_source_tables(dsn, tables, options=options, limits=limits,
                        allow_replica_identity_full=allow_replica_identity_full)
    path = Path(staging) if staging else staging_path(client.target)  # where libSQL targets stage theirs
    path.parent.mkdir(parents=True, exist_ok=True)
    report = run_snapshot(dsn=dsn, target=path, tables=tables, jobs=jobs, options=options,
                          allow_replica_identity_full=allow_replica_identity_full, say=say)
    loaded = upload_snapshot(path, client, limits=limits, say=say)
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)  # D1 holds everything now (its position last)
    say(f"snapshot: {loaded.rows} rows of {loaded.tables} tables loaded into {client.label} "
        f"in {loaded.requests} requests; streaming from {format_lsn(report.consistent_lsn)}")
    report.already_complete = False
    return report


def run_sync_d1(*, dsn: str, target: str | RemoteTarget, config_token: str | None = None, staging: str | Path | None = None,
                tables: str | Sequence[str] | None = None, jobs: int = 2, options: TranslateConfig | None = None,
                until_caught_up: bool = False, heartbeat_interval: float = 1.0,
                retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES, allow_replica_identity_full: bool = False,
                stop: threading.Event | None = None, say: Callable[[str], None] = print, max_wait: float = 0.2,
                on_batch: Callable[[ApplyResult], None] | None = None, metrics: Metrics | None = None,
                policy: RetryPolicy | None = None, limits: D1Limits = DEFAULT_LIMITS,
                http: HttpRetry | None = None) -> SyncReport:
    """Snapshot into D1 if needed, then stream until stopped (or caught up with ``until_caught_up``); the
    steps every remote target shares: ``pipeline.daemon.sync_remote``."""
    options = options or TranslateConfig()
    parsed = target if isinstance(target, RemoteTarget) else parse_target(target, config_token=config_token)
    if parsed.kind != "d1":
        raise D1Error(f"target {parsed.label} is not a D1 Worker URL (d1+https://HOST)")
    client = D1Client(parsed, policy=http, limits=limits)
    db = for_state(D1Connection(client))

    def snapshot() -> SnapshotReport | None:
        if state.read_position(db) is not None:
            return None
        return snapshot_into_d1(dsn=dsn, client=client, staging=staging, limits=limits, say=say, tables=tables,
                                jobs=jobs, options=options, allow_replica_identity_full=allow_replica_identity_full)

    def mappings(publication: str) -> dict[tuple[str, str], TableMapping]:
        shapes = apsw.Connection(":memory:")  # the translated tables, to build the codec mappings with
        try:
            return build_mappings(dsn, shapes, publication, options)
        finally:
            shapes.close()

    return sync_remote(RemoteSyncTarget(
        db=db, snapshot=snapshot, mappings=mappings,
        sink=lambda built: D1Sink(client, built, policy=policy, limits=limits, options=options),
        no_replica=lambda: D1Error(f"target {parsed.label} holds no finished pg2edge snapshot"),
        close=client.close),
        dsn=dsn, until_caught_up=until_caught_up, heartbeat_interval=heartbeat_interval,
        retained_wal_warn_bytes=retained_wal_warn_bytes, stop=stop, say=say, max_wait=max_wait, metrics=metrics,
        on_batch=on_batch)
