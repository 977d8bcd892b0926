"""Tenant files fed from Kafka: `pg2edge sync --from-kafka --tenant-pattern ...`.

The topic is the publisher's, partitioned by tenant (``publish --tenant-column``,
:mod:`pipeline.kafka.partitioning`) or not (one partition). Each partition is a
self-contained ordered stream for its tenants, so each partition consumed here
has its own hub file, ``<shared_path stem>.p<N><suffix>`` (``_shared.p0.db``):
the snapshot's staging area, the shared tables, and the partition's position
(commit LSN and Kafka offset, stored with the data). Per partition:

* ``snapshot-begin``: this partition's tenant files are deleted (a new snapshot
  replaces them) and the hub is emptied;
* ``op: "r"`` rows go into the hub (offset stored with each batch);
* ``snapshot-end``: the hub's position becomes the snapshot LSN and the hub is
  split into tenant files exactly as the embedded snapshot does
  (:func:`pipeline.tenants.split.split_hub`, resumable);
* change transactions go through a :class:`TenantRouter` that serves only this
  partition's tenants: every tenant file commits, then the hub with the offset.

The replica needs only the broker: the tables, codecs and the tenant layout
(tables with the tenant column, shared tables) come from the topic's schema
records (:mod:`pipeline.kafka.schema`, sent to every partition), kept in each
hub. A schema record showing a table's new shape mid-stream (with tenant
partitions the publisher sends those instead of in-transaction DDL) rebuilds the
codecs and the layout, and is recorded in the hub until every tenant file of the
partition has taken it with the next batch (as that transaction's Relation
message: the one drift rule, :mod:`pipeline.drift`); a partition that got no rows
of the transaction carrying PostgreSQL's Relation message still follows it. A
topic written before schema records existed needs ``dsn`` (the source catalog).

A restart seeks each partition to its hub's offset + 1; tenant files skip what
they already hold by commit LSN, so each file sees each transaction once.
Each partition's offsets are checked like a plain Kafka replica's
(:mod:`pipeline.kafka.bootstrap`): records deleted by retention stop it by name.
``partitions`` lets several processes (or edges) share a topic's partitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pg2edge import dsn as dsnlib
from pg2edge.config import TenantsConfig, TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import engine, state
from pg2edge.pipeline.engine import EngineReport, StopFlag
from pg2edge.pipeline.events import (
    Control,
    SchemaRecord,
    SnapshotBegin,
    SnapshotEnd,
    SnapshotRows,
    Transaction,
    Unreadable,
    Watermark,
)
from pg2edge.pipeline.kafka import records, schema
from pg2edge.pipeline.kafka.client import Consumer, make_consumer, wait_for_topic
from pg2edge.pipeline.kafka.partitioning import partition_of
from pg2edge.pipeline.kafka.replica import park_record, store_schema_record
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.retry import ensure_queue_table
from pg2edge.pipeline.sinks.sqlite import Applier, open_replica
from pg2edge.pipeline.sinks.tenants import TenantRouter
from pg2edge.pipeline.sources.cdc import current_wal_lsn
from pg2edge.pipeline.sources.kafka import KafkaSource, choose_partitions
from pg2edge.pipeline.sources.pgoutput import Relation
from pg2edge.pipeline.sources.replication import identify_system
from pg2edge.pipeline.sources.snapshot import published_tables
from pg2edge.pipeline.tenants.admin import delete_tenant, list_tenants
from pg2edge.pipeline.tenants.layout import TenantLayout, plan_layout
from pg2edge.pipeline.tenants.split import SPLIT_NAME, SPLIT_SCOPE, split_hub
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)
Say = Callable[[str], None]
RESHAPED_SCOPE, RESHAPED_NAME = "tenants", "reshaped"  # tables whose new shape the tenant files still need


def hub_path(shared_path: str | Path, partition: int) -> Path:
    """The hub file of one partition: ``_shared.db`` -> ``_shared.p3.db``."""
    p = Path(shared_path)
    return p.with_name(f"{p.stem}.p{partition}{p.suffix}")


@dataclass
class TenantKafkaReport(EngineReport):
    topic: str = ""
    partitions: list[int] = field(default_factory=list)
    tenants_created: int = 0
    peak_open_files: int = 0
    parked: int = 0  # records not pg2edge's (or of a newer format), parked in the hubs' DLQs by name
    positions: dict[int, state.Position | None] = field(default_factory=dict)


class PartitionSink:
    """One partition's sink: its hub file and the router into its tenants' files."""

    def __init__(self, *, topic: str, partition: int, partitions: int, dsn: str | None, tenants: TenantsConfig,
                 options: TranslateConfig, max_open: int, say: Say) -> None:
        self.topic, self.partition, self.partitions = topic, partition, partitions
        self.dsn, self.config, self.options, self.max_open, self.say = dsn, tenants, options, max_open, say
        self.label = f"topic {topic} partition {partition}"
        self.path = hub_path(tenants.shared_path, partition)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hub = open_replica(self.path)
        self.layout: TenantLayout | None = None
        self.hub_applier: Applier | None = None
        self.router: TenantRouter | None = None
        self.created = self.peak = 0
        self.parked = 0
        self.topic_schema = schema.TopicSchema()
        # tables whose new shape the partition's tenant files still need (kept in the hub across restarts)
        self.reshaped: list[str] = (state.read_record(self.hub, RESHAPED_SCOPE, RESHAPED_NAME) or {}).get("tables") or []
        names = state.read_stream(self.hub)
        if names is not None:
            self._prepare(names.publication, state.read_position(self.hub))
            run = state.read_run(self.hub)
            if run is not None and run.status is state.RunStatus.DONE:
                self._split_and_route()  # also finishes a split a crash interrupted

    # -- set-up ------------------------------------------------------------------------
    def _prepare(self, publication: str, at: Mapping[str, Any] | state.Position | None) -> None:
        """Tables, codecs and the tenant layout: from the schema records of this partition (kept in the hub),
        else (a topic written before schema records existed) from the source catalog."""
        doc = state.read_record(self.hub, schema.SCOPE, schema.NAME)
        if doc is not None:
            mappings = self.topic_schema.apply(self.hub, doc, say=self.say)
            self.layout = self._layout(doc)
        elif self.dsn is not None:
            mappings = build_mappings(self.dsn, self.hub, publication, self.options)
            self.layout = plan_layout(self.dsn, published_tables(self.dsn, publication), config=self.config,
                                      options=self.options)
        else:
            cursor = at.kafka if isinstance(at, state.Position) else at
            offset = (cursor or {}).get("offset", "?")
            raise ConfigError(f"topic {self.topic} partition {self.partition} offset {offset}: no schema record "
                              "pg2edge can read before this snapshot (a topic written by an older `pg2edge "
                              "publish`, or a record parked in the dead-letter queue: `pg2edge dlq list --target "
                              f"{self.path}`): give --source (read-only catalog access) for the schema and codec")
        self.hub_applier = Applier(self.hub, mappings)

    def _layout(self, doc: Mapping[str, Any]) -> TenantLayout:
        """The tenant layout of the tables a (merged) schema record describes: the one layout planner."""
        return plan_layout(self.dsn, [schema.table_key(q) for q in doc["selection"]], config=self.config,
                           options=schema.options_of(doc), schema=schema.model_of(doc))

    def _owns(self, tenant: str) -> bool:
        return partition_of(tenant, self.partitions) == self.partition

    def _split_and_route(self) -> None:
        assert self.layout is not None and self.hub_applier is not None
        split_hub(hub_path=self.path, layout=self.layout, say=self.say)
        self.router = TenantRouter(layout=self.layout, hub=self.hub, hub_path=self.path,
                                   mappings=self.hub_applier.mappings, owns=self._owns, max_open=self.max_open)

    def close_router(self) -> None:
        if self.router is not None:
            self.created += self.router.created
            self.peak = max(self.peak, self.router.pool.peak)
            self.router.close()
            self.router = None

    def stored_offset(self) -> int | None:
        """The offset of the last record applied (None: nothing applied yet)."""
        pos = state.read_position(self.hub)
        if pos and pos.kafka and pos.kafka.get("topic") == self.topic and pos.kafka.get("partition") == self.partition:
            return int(pos.kafka["offset"])
        return None

    # -- the sink protocol ---------------------------------------------------------------
    def position(self) -> state.Position | None:
        return state.read_position(self.hub)

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        if self.router is None:
            raise ConfigError(f"{self.label} has changes before a complete snapshot: was it written by "
                              "pg2edge publish?")
        cursor = batch[-1].cursor
        reshaped = self._reshaped()
        result = self.router.apply(batch, kafka=dict(cursor) if cursor is not None else None, reshaped=reshaped)
        if self.reshaped:  # every tenant file and the hub took them (taken twice after a crash here: no-op)
            self._write_reshaped([])
        return ApplyResult(applied=result.transactions, rows=result.rows, position=self.position())

    def _reshaped(self) -> list[Relation]:
        """The tables a schema record gave a new shape since the last batch, as Relation messages."""
        doc = state.read_record(self.hub, schema.SCOPE, schema.NAME) if self.reshaped else None
        if doc is None:
            return []
        model = {t.qualified: t for t in schema.model_of(doc).tables}
        return [schema.table_relation(model[q]) for q in self.reshaped if q in model]

    def _write_reshaped(self, tables: list[str]) -> None:
        with self.hub:
            state.write_record(self.hub, RESHAPED_SCOPE, RESHAPED_NAME, {"tables": tables})
        self.reshaped = tables

    def _schema_record(self, item: SchemaRecord) -> None:
        """Keep the topic's schema in the hub; a table that changed shape mid-stream gets its codec now, new
        tenant files get it from the layout, and every existing tenant file takes it with the next batch."""
        ensure_queue_table(self.hub)  # a record that is not readable is parked there by name
        with self.hub:
            merged = store_schema_record(self.hub, item, label=self.label)
            if merged is None:
                self.parked += 1
                return
            if item.document.get("reason") == "snapshot" or self.hub_applier is None:
                return  # the snapshot-begin that follows builds the tables
            self.hub_applier.mappings.update(self.topic_schema.apply(self.hub, merged, say=self.say))
            self.hub_applier.forget_tables()
            layout = self.layout = self._layout(merged)
            changed = [f"{t['schema']}.{t['name']}" for t in item.document["model"]["tables"]]
            self._write_reshaped(sorted({*self.reshaped, *changed}))  # inside this transaction
        if self.router is not None:
            self.router.layout = layout

    def control(self, item: Control) -> None:
        if isinstance(item, SnapshotRows):
            if self.hub_applier is None:
                raise ConfigError(f"{self.label} has snapshot rows before any snapshot-begin record: was it "
                                  "written by pg2edge publish?")
            self.hub_applier.apply([Transaction(xid=0, commit_lsn=0, end_lsn=0, commit_ts=0, events=item.events)],
                                   kafka=dict(item.cursor) if item.cursor else None, check_lsn=False)
        elif isinstance(item, SnapshotBegin):
            self._begin(item)
        elif isinstance(item, SnapshotEnd):
            self._end(item)
            self.say(f"partition {self.partition}: snapshot applied and split; streaming changes")
        elif isinstance(item, Watermark):
            state.advance_watermark(self.hub, item.lsn, cursor=item.cursor)
        elif isinstance(item, Unreadable):  # parked in the hub's DLQ by name, never skipped silently
            ensure_queue_table(self.hub)
            park_record(self.hub, item, label=self.label)
            self.parked += 1
        elif isinstance(item, SchemaRecord):
            self._schema_record(item)

    def _begin(self, item: SnapshotBegin) -> None:
        column, n = item.partitioning.get("column"), int(item.partitioning.get("partitions") or 1)
        if n != self.partitions:
            raise ConfigError(f"topic {self.topic}: the snapshot was published for {n} partition(s) but the "
                              f"topic has {self.partitions}")
        if column is not None and column != self.config.column:
            raise ConfigError(f"topic {self.topic} is partitioned by tenant column {column!r} but this replica "
                              f"splits by {self.config.column!r}: use --tenant-column {column}")
        ident = state.SourceIdentity(system_identifier=item.system_identifier, database=item.database)
        state.check_source(self.hub, ident)
        self.close_router()
        self._prepare(item.publication, item.cursor)
        assert self.hub_applier is not None
        removed = [t for t in list_tenants(self.config.pattern) if self._owns(t)]
        for tenant in removed:  # a new snapshot replaces this partition's tenant files
            delete_tenant(self.config.pattern, tenant)
        lsn = item.snapshot_lsn
        self.say(f"partition {self.partition}: snapshot {format_lsn(lsn)} begins"
                 + (f" ({len(removed)} tenant file(s) removed)" if removed else ""))
        with self.hub:
            state.write_source(self.hub, ident)
            state.write_stream(self.hub, state.StreamInfo(slot=item.slot, publication=item.publication))
            for (s, t), mapping in self.hub_applier.mappings.items():
                self.hub.execute(f"DELETE FROM {quote_ident(mapping.target)}")
                state.write_table(self.hub, state.TableState(table=f"{s}.{t}", snapshot=state.SnapshotStatus.COPYING,
                                                             snapshot_lsn=lsn))
            state.write_record(self.hub, SPLIT_SCOPE, SPLIT_NAME, {"status": "pending"})
            self._write_reshaped([])
            state.write_run(self.hub, state.SnapshotRun(status=state.RunStatus.COPYING, consistent_lsn=lsn,
                                                        via="kafka"))
            state.write_position(self.hub, state.Position(commit_lsn=0, end_lsn=0,
                                                          kafka=dict(item.cursor) if item.cursor else None))

    def _end(self, item: SnapshotEnd) -> None:
        lsn = item.snapshot_lsn
        with self.hub:
            for ts in state.read_tables(self.hub).values():
                state.write_table(self.hub, replace(ts, snapshot=state.SnapshotStatus.DONE))
            state.write_run(self.hub, state.SnapshotRun(status=state.RunStatus.DONE, consistent_lsn=lsn, via="kafka"))
            state.write_position(self.hub, state.Position(commit_lsn=lsn, end_lsn=lsn,
                                                          kafka=dict(item.cursor) if item.cursor else None))
        self._split_and_route()

    def maintain(self) -> None:
        """Tenant files have no retry queue."""

    def close(self) -> None:
        self.close_router()
        self.hub.close()


class PartitionedSink:
    """Routes each item to the sink of its Kafka partition (the item's cursor names it)."""

    def __init__(self, parts: dict[int, PartitionSink], *, label: str) -> None:
        self.parts, self.label = parts, label

    def position(self) -> state.Position | None:
        """The least advanced partition's position (commit LSN 0 until every partition has a snapshot)."""
        positions = [p.position() for p in self.parts.values()]
        if any(p is None or p.commit_lsn == 0 for p in positions):
            return state.Position(commit_lsn=0, end_lsn=0)
        return min((p for p in positions if p is not None), key=lambda p: p.visible_lsn)

    def durable(self, *, wait: bool = False) -> state.Position | None:
        """Durable as soon as applied (the partitions' tenant sinks commit with synchronous=FULL)."""
        return self.position()

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        result = ApplyResult()
        by_part: dict[int, list[Transaction]] = {}
        for txn in batch:
            assert txn.cursor is not None
            by_part.setdefault(int(txn.cursor["partition"]), []).append(txn)
        for p, txns in sorted(by_part.items()):
            done = self.parts[p].apply(txns)
            result.applied += done.applied
            result.rows += done.rows
        result.position = self.position()
        return result

    def control(self, item: Control) -> None:
        assert item.cursor is not None
        self.parts[int(item.cursor["partition"])].control(item)

    def maintain(self) -> None:
        """Nothing: no retry queue."""

    def close(self) -> None:
        for part in self.parts.values():
            part.close()


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_tenant_kafka_replica(*, bootstrap: str, tenants: TenantsConfig, dsn: str | None = None,
                             topic: str | None = None,
                             topic_prefix: str = "pg2edge", partitions: Sequence[int] | None = None,
                             group: str | None = None, client: str = "kafka-python",
                             options: TranslateConfig | None = None, until_caught_up: bool = False,
                             until_lsn: int | None = None, idle_seconds: float = 2.0, max_records: int = 5000,
                             stop: threading.Event | None = None, consumer: Consumer | None = None,
                             say: Say = print, metrics: Metrics | None = None) -> TenantKafkaReport:
    """Consume the change topic (all partitions, or ``partitions``) into one SQLite file per tenant:
    the engine pairing a :class:`KafkaSource` with a :class:`PartitionedSink` of hub sinks.

    ``dsn`` is optional, as for :func:`pipeline.kafka.replica.run_kafka_replica`: the tables, codecs and the
    tenant layout come from the topic's schema records (a topic written before they existed needs ``dsn``).
    Stops like that replica: at ``until_lsn``; with ``until_caught_up`` at the source's current LSN (with
    ``dsn``), or once every record that was in the topic at start was read and ``idle_seconds`` passed
    without a change. A topic that does not exist yet is waited for (started before the publisher).
    """
    from pg2edge.pipeline.tenants.remote import reject_url_pattern

    reject_url_pattern(tenants.pattern, "sync --from-kafka")  # Kafka tenant replicas are files
    options = options or TranslateConfig()
    if topic is None:
        if dsn is None:
            raise ConfigError("give --topic or --source (the topic is <prefix>.<database>.changes)")
        topic = records.topic_name(topic_prefix, identify_system(dsn).database)
    goal = until_lsn
    if until_caught_up and goal is None and dsn is not None:
        goal = current_wal_lsn(dsn)
    flag = StopFlag(stop)
    restore = flag.install()
    own = consumer is None
    consumer = consumer or make_consumer(client, bootstrap, group=group)
    parts: dict[int, PartitionSink] = {}
    try:
        if not wait_for_topic(consumer, topic, stopped=lambda: flag.stopped, say=say):  # started before the publisher
            return TenantKafkaReport(topic=topic, partitions=[], stopped_by=flag.stopped or "stopped")
        n, chosen = choose_partitions(consumer, topic, partitions)
        report = TenantKafkaReport(topic=topic, partitions=chosen)
        max_open = max(1, tenants.max_open // len(chosen))
        for p in chosen:
            parts[p] = PartitionSink(topic=topic, partition=p, partitions=n, dsn=dsn, tenants=tenants,
                                     options=options, max_open=max_open, say=say)
        source = KafkaSource(consumer, topic, stored_offsets={p: part.stored_offset() for p, part in parts.items()},
                             until_caught_up=until_caught_up, until_lsn=goal, idle_seconds=idle_seconds,
                             max_records=max_records, group=group)
        say(f"consuming {topic} partition(s) {','.join(map(str, chosen))} of {n} into {tenants.pattern}")
        sink = PartitionedSink(parts, label=f"{tenants.pattern} (topic {topic})")
        engine.run(source, sink, flag=flag, report=report, max_wait=0.2, metrics=metrics, say=say)
        for p, part in parts.items():
            part.close_router()
            report.positions[p] = state.read_position(part.hub)
        report.tenants_created = sum(part.created for part in parts.values())
        report.peak_open_files = sum(part.peak for part in parts.values())
        report.parked = sum(part.parked for part in parts.values())
        return report
    finally:
        for part in parts.values():
            part.close()
        restore()
        if own:
            consumer.close()
