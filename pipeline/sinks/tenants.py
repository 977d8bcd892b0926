"""CDC routing: each source transaction split by tenant, one Applier (and one position) per file.

For a batch of whole source transactions:

1. every event goes to its tenant (the tenant column of ``after``, or of
   ``before`` for deletes); a row whose tenant changed becomes a delete in the
   old tenant's file and an upsert in the new one; a TRUNCATE of a tenant table
   goes to every tenant file; shared-table events go to every tenant file
   (``shared = "every"``) and always to the hub (shared) file;
2. each tenant's events become per-tenant ``Transaction``s with the source
   transaction's xid/commit_lsn/end_lsn/commit_ts, applied by that file's
   Applier: rows + position in one SQLite transaction per file, and anything at
   or below the file's stored commit LSN is skipped after a restart; tenant databases (a URL pattern)
   are applied ``[tenants] max_connections`` at a time by worker threads, each tenant once per batch
   (one atomic Hrana batch: rows + its position), so its transactions keep their order;
3. the hub applies its share of every transaction (possibly empty), so the
   hub's position is the batch end; only then is the batch acknowledged.

A restart streams from the hub's position: files that had already committed
skip what they hold, so each file sees each transaction exactly once. A tenant
that appears after the snapshot gets a new file seeded from the hub (shared
rows, position = the hub's position, which is that of the previous batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pg2edge.pipeline import state
from pg2edge.pipeline.drift import columns_record
from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.events import UNCHANGED_TOAST, ChangeEvent, Control, Op, Transaction, Watermark
from pg2edge.pipeline.remote.errors import RemoteError
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sources.pgoutput import Relation
from pg2edge.pipeline.tenants.admin import list_tenants
from pg2edge.pipeline.tenants.ids import encode_tenant_id, is_url_pattern, tenant_path
from pg2edge.pipeline.tenants.layout import Key, TenantLayout
from pg2edge.pipeline.tenants.pool import TenantPool
from pg2edge.pipeline.tenants.split import create_tenant_file

log = logging.getLogger(__name__)

BROADCAST = object()  # an event every tenant file receives
KEEPALIVE_SECONDS = 5.0


@dataclass(slots=True)
class RouteResult:
    transactions: int = 0  # source transactions routed
    tenant_transactions: int = 0  # per-tenant transactions applied
    rows: int = 0  # row events applied in tenant files
    tenants_touched: int = 0
    tenants_created: int = 0


def _tenant_of(layout: TenantLayout, ev: ChangeEvent, row: Mapping[str, Any] | None) -> str:
    col = layout.column
    value = None if row is None else row.get(col)
    if value is UNCHANGED_TOAST:
        value = None
    table = f"{ev.source.schema}.{ev.source.table}"
    if is_url_pattern(layout.config.pattern):  # refuses unusable ids
        encode_tenant_id(value or "", table=table, key=dict(ev.key))
    else:
        tenant_path(layout.config.pattern, value or "", table=table, key=dict(ev.key))
    return str(value)


def moves_tenant(ev: ChangeEvent, column: str) -> bool:
    """True for an UPDATE that changes the row's tenant column (its old value is in ``before``)."""
    return (ev.op is Op.UPDATE and ev.before is not None and column in ev.before and ev.after is not None
            and ev.before[column] != ev.after.get(column))


def split_move(ev: ChangeEvent) -> tuple[ChangeEvent, ChangeEvent]:
    """A tenant move as (delete in the old tenant, insert in the new); unchanged TOAST values are
    taken from ``before`` where it has them (REPLICA IDENTITY FULL), else left as the sentinel."""
    assert ev.before is not None and ev.after is not None
    after = {c: ev.before.get(c, v) if v is UNCHANGED_TOAST else v for c, v in ev.after.items()}
    return replace(ev, op=Op.DELETE, after=None), replace(ev, op=Op.CREATE, before=None, after=after)


def route(layout: TenantLayout, txn: Transaction) -> tuple[list[tuple[Any, ChangeEvent]], list[ChangeEvent]]:
    """(tenant or BROADCAST, event) pairs for tenant files, and the hub's events, in source order."""
    tenant_items: list[tuple[Any, ChangeEvent]] = []
    hub_events: list[ChangeEvent] = []
    for ev in txn.events:
        key: Key = ev.table
        if key in layout.shared_tables:
            hub_events.append(ev)
            if layout.broadcast_shared:
                tenant_items.append((BROADCAST, ev))
            continue
        if key not in layout.tenant_tables:
            raise ApplyError(f"change to {key[0]}.{key[1]} which is neither a tenant nor a shared table")
        if ev.op is Op.TRUNCATE:
            tenant_items.append((BROADCAST, ev))
        elif ev.op is Op.DELETE:
            tenant_items.append((_tenant_of(layout, ev, ev.before), ev))
        elif moves_tenant(ev, layout.column):
            old, new = _tenant_of(layout, ev, ev.before), _tenant_of(layout, ev, ev.after)
            gone, arrived = split_move(ev)
            toast = [c for c, v in (arrived.after or {}).items() if v is UNCHANGED_TOAST]
            if toast:
                raise ApplyError(f"{key[0]}.{key[1]} key {dict(ev.key)!r} moves from tenant {old!r} to {new!r} "
                                 f"but unchanged TOAST column(s) {toast} are not in the change "
                                 "(set REPLICA IDENTITY FULL on the table)")
            tenant_items.append((old, gone))
            tenant_items.append((new, arrived))
        else:
            tenant_items.append((_tenant_of(layout, ev, ev.after), ev))
    return tenant_items, hub_events


@dataclass(slots=True)
class _TenantDone:
    """One tenant database's share of a batch, as a worker thread finished it."""

    tenant: str
    sink: Any
    opened: bool = False
    result: ApplyResult | None = None
    error: Exception | None = None


class TenantRouter:
    """Applies batches to the tenant files (LRU of open Appliers) or tenant databases (LRU of
    LibsqlSinks over one bounded HTTP pool, :mod:`pg2edge.pipeline.tenants.remote`), then to the hub."""

    def __init__(self, *, layout: TenantLayout, hub: Any, hub_path: str | Path,
                 mappings: Mapping[tuple[str, str], TableMapping], owns: Callable[[str], bool] | None = None,
                 max_open: int | None = None) -> None:
        """``owns``: the tenants this router serves (a partition of a topic partitioned by tenant);
        broadcast events go only to those. ``max_open``: the LRU size (default ``[tenants] max_open``)."""
        self.layout, self.hub, self.hub_path = layout, hub, str(hub_path)
        keep = layout.tenant_file_tables()
        self.tenant_mappings = {k: m for k, m in mappings.items() if k in keep}
        self.hub_applier = Applier(hub, mappings)
        self.identity, self.stream = state.read_source(hub), state.read_stream(hub)
        self.remote: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._registry_version = -1
        # tenant databases applied at once: one per HTTP connection of the shared pool
        self.workers = layout.config.max_connections
        self.deleted: set[str] = set()
        self.ignored: dict[str, int] = {}  # deleted tenant -> changes not applied
        if is_url_pattern(layout.config.pattern):
            from pg2edge.pipeline.tenants.remote import RemoteTenants

            self.remote = RemoteTenants(layout.config)
            self.known = set()
            self._read_registry()
        else:
            self.known = {t for t in list_tenants(layout.config.pattern) if owns is None or owns(t)}
        self.created = 0
        self.keepalive: Callable[[], None] | None = None  # called every few seconds inside a long batch
        self.pool: TenantPool[Any] = TenantPool(max_open=max_open or layout.config.max_open, opener=self._open,
                                                closer=_close_applier)

    def _hub_version(self) -> int:
        """SQLite's ``data_version`` of the hub: changes when another connection commits to it."""
        return int(self.hub.execute("PRAGMA data_version").fetchall()[0][0])

    def _read_registry(self) -> None:
        from pg2edge.pipeline.tenants.remote import read_registry

        self._registry_version = self._hub_version()

        for rec in read_registry(self.hub).values():
            (self.deleted if rec.get("status") == "deleted" else self.known).add(rec["tenant"])
        self.known -= self.deleted
        pool: TenantPool[Any] | None = getattr(self, "pool", None)
        if pool is not None:
            for tenant in self.deleted:
                pool.discard(tenant)

    def _seed_remote(self, tenant: str) -> None:
        """A tenant new to the registry: create and fill its database from the hub (main thread: the hub
        connection is this thread's)."""
        if tenant not in self.known:
            position = state.read_position(self.hub)
            assert position is not None
            rows = self.remote.seed(hub=self.hub, hub_path=self.hub_path, layout=self.layout, tenant=tenant,
                                    tenant_value=tenant, position=position, identity=self.identity,
                                    stream=self.stream)
            if rows is not None:
                self.created += 1
                log.info("new tenant %r: database %s seeded with %d shared rows", tenant,
                         self.remote.target(tenant).label, rows)
            self.known.add(tenant)

    def _open_remote(self, tenant: str) -> Any:
        self._seed_remote(tenant)
        return self.remote.open_sink(tenant, self.tenant_mappings)

    def _apply_tenant(self, tenant: str, sink: Any, txns: list[Transaction]) -> _TenantDone:
        """In a worker thread: ``tenant``'s batch as one atomic Hrana batch (rows + its position)."""
        done = _TenantDone(tenant, sink)
        try:
            if done.sink is None:
                done.sink = self.remote.open_sink(tenant, self.tenant_mappings)
                done.opened = True
            done.result = done.sink.apply(txns)
        except Exception as exc:  # re-raised by the main thread, which names the tenant
            done.error = exc
        return done

    def _apply_remote(self, per_tenant: dict[str, list[Transaction]], result: RouteResult) -> None:
        """Every touched tenant database's batch, at most ``workers`` at once (each tenant once: a tenant's
        batches never run concurrently); returns only when every one committed or, after the first
        failure, when the ones already sent have finished (the rest are not sent): then the first
        failing tenant's error is raised and the hub does not advance."""
        beat = time.monotonic()
        tenants = sorted(per_tenant)
        for tenant in tenants:  # new tenants are seeded here, one after another (the hub records them)
            if tenant not in self.known:
                self._seed_remote(tenant)
            if self.keepalive is not None and time.monotonic() - beat >= KEEPALIVE_SECONDS:
                self.keepalive()
                beat = time.monotonic()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pg2edge-tenant")
        taken = {}  # future -> (tenant, its open sink taken out of the LRU, or None)
        for t in tenants:
            sink = self.pool.take(t)
            taken[self._executor.submit(self._apply_tenant, t, sink, per_tenant[t])] = (t, sink)
        pending = set(taken)
        failed: list[_TenantDone] = []
        while pending:
            finished, pending = wait(pending, timeout=KEEPALIVE_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():  # never started: its sink goes back unused
                    tenant, sink = taken[future]
                    if sink is not None:
                        self.pool.put(tenant, sink)
                    continue
                done = future.result()
                if done.opened:
                    self.pool.opened += 1
                if done.error is not None:
                    failed.append(done)
                    if done.sink is not None and isinstance(done.error, RemoteError):
                        _close_applier(done.sink)
                    elif done.sink is not None:
                        self.pool.put(done.tenant, done.sink)
                    for other in pending:  # stop: what has not started is not sent
                        other.cancel()
                    continue
                self.pool.put(done.tenant, done.sink)
                assert done.result is not None
                result.tenant_transactions += done.result.applied
                result.rows += done.result.rows
            if self.keepalive is not None and time.monotonic() - beat >= KEEPALIVE_SECONDS:
                self.keepalive()
                beat = time.monotonic()
        if failed:
            first = min(failed, key=lambda d: d.tenant)
            assert first.error is not None
            self._raise_tenant_error(first.tenant, first.error)

    def _raise_tenant_error(self, tenant: str, error: Exception) -> None:
        if not isinstance(error, RemoteError) or not self.remote.gone(tenant):
            raise error
        from pg2edge.pipeline.tenants.remote import TenantDatabaseGone

        raise TenantDatabaseGone(
            f"tenant {tenant!r}: its database {self.remote.target(tenant).label} does not exist any more "
            "(dropped outside pg2edge); this batch was not acknowledged (tenants that committed it skip it "
            f"on restart): recreate the database, or `pg2edge tenant delete {tenant} --yes` to stop "
            "replicating it") from None

    def _open(self, tenant: str) -> Any:
        if self.remote is not None:
            return self._open_remote(tenant)
        path = tenant_path(self.layout.config.pattern, tenant)
        if tenant not in self.known or not path.exists():
            position = state.read_position(self.hub)
            assert position is not None
            _, rows = create_tenant_file(hub_path=self.hub_path, layout=self.layout, tenant=tenant,
                                         tenant_value=tenant, position=position, identity=self.identity,
                                         stream=self.stream)
            if rows is not None:
                self.created += 1
                log.info("new tenant %r: file %s seeded with %d shared rows", tenant, path, rows)
            self.known.add(tenant)
        return Applier(open_replica(path), self.tenant_mappings)

    def apply(self, batch: Sequence[Transaction], *, kafka: dict[str, Any] | None = None,
              reshaped: Sequence[Relation] = ()) -> RouteResult:
        """Apply ``batch`` to every tenant file it touches, then to the hub; ack ``batch[-1].end_lsn`` after.

        ``kafka`` (topic, partition, offset of the batch's last record) goes into the hub's position.
        ``reshaped``: new table shapes (from a Kafka topic's schema records) that every tenant file and the
        hub take with the batch's first transaction, as if its Relation messages had carried them."""
        result = RouteResult(transactions=len(batch))
        per_tenant: dict[str, list[Transaction]] = {}
        hub_txns: list[Transaction] = []
        routed = []
        if reshaped and batch:
            first = batch[0]
            carried = {(r.schema, r.name) for r in first.relations}
            batch = [replace(first, relations=(*[r for r in reshaped if (r.schema, r.name) not in carried],
                                               *first.relations)), *batch[1:]]
        for txn in batch:
            items, hub_events = route(self.layout, txn)
            hub_txns.append(replace(txn, events=tuple(hub_events)))
            routed.append((txn, items))
        # a tenant new in this batch is seeded at the hub's position (before the batch), so it
        # needs every broadcast event of the batch, also those before its first own event
        if self.remote is not None and self._hub_version() != self._registry_version:
            self._read_registry()  # `pg2edge tenant delete` ran meanwhile (another connection wrote the hub)
        everyone = self.known | {t for _, items in routed for t, _ in items if t is not BROADCAST}
        everyone -= self.deleted
        reshaping = self._reshaping(batch)
        for i, (txn, items) in enumerate(routed):
            # every tenant file takes new shapes: a Kafka schema record's, or a schema change or new Relation
            # message in the stream (PostgreSQL describes a relation once per stream, in the first transaction
            # that uses it after the change: a tenant file whose first row comes later would miss it)
            every = (bool(reshaped) and i == 0) or i in reshaping
            if not items and not every:
                continue
            named = {t for t, _ in items if t is not BROADCAST}
            for tenant in (everyone if every or any(t is BROADCAST for t, _ in items) else named):
                events = tuple(ev for t, ev in items if t is BROADCAST or t == tenant)
                per_tenant.setdefault(tenant, []).append(replace(txn, events=events))
        for tenant in sorted(per_tenant.keys() & self.deleted):
            txns = per_tenant.pop(tenant)
            n = sum(len(t.events) for t in txns)
            self.ignored[tenant] = self.ignored.get(tenant, 0) + n
            log.warning("tenant %r was deleted (`pg2edge tenant delete`): %d change(s) for it not applied "
                        "(commit %s..%s)", tenant, n, txns[0].commit_lsn, txns[-1].commit_lsn)
        if self.remote is not None:
            self._apply_remote(per_tenant, result)
        else:
            beat = time.monotonic()
            for tenant in sorted(per_tenant):
                if self.keepalive is not None and time.monotonic() - beat >= KEEPALIVE_SECONDS:
                    self.keepalive()
                    beat = time.monotonic()
                applied: ApplyResult = self.pool.get(tenant).apply(per_tenant[tenant])
                result.tenant_transactions += applied.applied
                result.rows += applied.rows
        result.tenants_touched = len(per_tenant)
        self.hub_applier.apply(hub_txns, kafka=kafka)
        result.tenants_created = self.created
        return result

    def _reshaping(self, batch: Sequence[Transaction]) -> set[int]:
        """Indexes of the transactions that change a table's shape: a schema change, or a Relation message of a
        mapped table whose columns differ from those the hub recorded (a restart's Relation messages do not)."""
        if not any(t.schema_changes or t.relations for t in batch):
            return set()
        known = state.read_tables(self.hub)

        def new_shape(rel: Relation) -> bool:
            if (rel.schema, rel.name) not in self.hub_applier.mappings:
                return False
            ts = known.get(f"{rel.schema}.{rel.name}")
            return ts is None or ts.columns != columns_record(rel)

        return {i for i, txn in enumerate(batch) if txn.schema_changes or any(map(new_shape, txn.relations))}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.pool.close()
        if self.remote is not None:
            self.remote.close()


def _close_applier(item: Any) -> None:
    """A tenant file's Applier (its connection) or a tenant database's LibsqlSink."""
    if isinstance(item, Applier):
        item.conn.close()
    else:
        item.close()


class TenantSink:
    """The database-per-tenant sink: a :class:`TenantRouter` over the tenant files and the hub file.

    The position is the hub's: it commits last, after every touched tenant file, so the engine
    acknowledges a batch only once every file holds it."""

    def __init__(self, router: TenantRouter, *, label: str) -> None:
        self.router, self.label = router, label

    def position(self) -> state.Position | None:
        return state.read_position(self.router.hub)

    def durable(self, *, wait: bool = False) -> state.Position | None:
        """Durable as soon as applied (the tenant files and the hub commit with synchronous=FULL)."""
        return self.position()

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        cursor = batch[-1].cursor if batch else None
        routed = self.router.apply(batch, kafka=dict(cursor) if cursor is not None else None)
        return ApplyResult(applied=routed.transactions, rows=routed.rows, position=self.position())

    def control(self, item: Control) -> None:
        if not isinstance(item, Watermark):
            raise ApplyError(f"{self.label}: {type(item).__name__} records are taken by the Kafka tenant replica")
        state.advance_watermark(self.router.hub, item.lsn, cursor=item.cursor)

    def maintain(self) -> None:
        """Tenant files have no retry queue (a change that fails stops the stream, naming table and key)."""

    def close(self) -> None:
        self.router.close()
