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

A restart seeks each partition to its hub's offset + 1; tenant files skip what
they already hold by commit LSN, so each file sees each transaction once.
Each partition's offsets are checked like a plain Kafka replica's
(:mod:`pipeline.kafka.bootstrap`): records deleted by retention stop it by name.
``partitions`` lets several processes (or edges) share a topic's partitions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pg2edge.config import TenantsConfig, TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import keeper, state
from pg2edge.pipeline.applier import Applier, open_replica
from pg2edge.pipeline.daemon import StopFlag, build_mappings, current_wal_lsn
from pg2edge.pipeline.events import ChangeEvent, Transaction
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.bootstrap import OffsetGuard, start_guard
from pg2edge.pipeline.kafka.client import Consumer, Record, make_consumer
from pg2edge.pipeline.kafka.partitioning import partition_of
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.replication import identify_system
from pg2edge.pipeline.snapshot import published_tables
from pg2edge.pipeline.tenants.admin import delete_tenant, list_tenants
from pg2edge.pipeline.tenants.layout import TenantLayout, plan_layout
from pg2edge.pipeline.tenants.router import TenantRouter
from pg2edge.pipeline.tenants.split import SPLIT_NAME, SPLIT_SCOPE, split_hub
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def hub_path(shared_path: str | Path, partition: int) -> Path:
    """The hub file of one partition: ``_shared.db`` -> ``_shared.p3.db``."""
    p = Path(shared_path)
    return p.with_name(f"{p.stem}.p{partition}{p.suffix}")


@dataclass
class TenantKafkaReport:
    topic: str
    partitions: list[int] = field(default_factory=list)
    snapshot_rows: int = 0
    transactions: int = 0  # partition (sub)transactions routed
    rows: int = 0
    tenants_created: int = 0
    peak_open_files: int = 0
    positions: dict[int, state.Position | None] = field(default_factory=dict)
    stopped_by: str = "caught up"


class _Partition:
    """One partition: its hub file and the router into its tenants' files."""

    def __init__(self, *, topic: str, partition: int, partitions: int, dsn: str, tenants: TenantsConfig,
                 options: TranslateConfig, max_open: int, say: Say, metrics: Metrics | None = None) -> None:
        self.topic, self.partition, self.partitions = topic, partition, partitions
        self.dsn, self.config, self.options, self.max_open, self.say = dsn, tenants, options, max_open, say
        self.metrics = metrics
        self.path = hub_path(tenants.shared_path, partition)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hub = open_replica(self.path)
        self.regroup = records.Regrouper()
        self.guard: OffsetGuard  # set by the caller once the consumer is known (start_guard)
        self.layout: TenantLayout | None = None
        self.hub_applier: Applier | None = None
        self.router: TenantRouter | None = None
        self.created = self.peak = 0
        names = state.read_stream(self.hub)
        if names is not None:
            self._prepare(names.publication)
            if (state.read_record(self.hub, keeper.RUN_SCOPE, keeper.RUN_NAME) or {}).get("status") == "done":
                self._split_and_route()  # also finishes a split a crash interrupted

    # -- set-up ------------------------------------------------------------------------
    def _prepare(self, publication: str) -> None:
        mappings = build_mappings(self.dsn, self.hub, publication, self.options)
        self.hub_applier = Applier(self.hub, mappings)
        self.layout = plan_layout(self.dsn, published_tables(self.dsn, publication), config=self.config,
                                  options=self.options)

    def _owns(self, tenant: str) -> bool:
        return partition_of(tenant, self.partitions) == self.partition

    def _split_and_route(self) -> None:
        assert self.layout is not None and self.hub_applier is not None
        split_hub(hub_path=self.path, layout=self.layout, say=self.say)
        self.router = TenantRouter(layout=self.layout, hub=self.hub, hub_path=self.path,
                                   mappings=self.hub_applier.mappings, owns=self._owns, max_open=self.max_open)

    def _close_router(self) -> None:
        if self.router is not None:
            self.created += self.router.created
            self.peak = max(self.peak, self.router.pool.peak)
            self.router.close()
            self.router = None

    def kafka_pos(self, offset: int) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": offset}

    def stored_offset(self) -> int | None:
        """The offset of the last record applied (None: nothing applied yet)."""
        pos = state.read_position(self.hub)
        if pos and pos.kafka and pos.kafka.get("topic") == self.topic and pos.kafka.get("partition") == self.partition:
            return int(pos.kafka["offset"])
        return None

    def visible_lsn(self) -> int:
        pos = state.read_position(self.hub)
        return pos.visible_lsn if pos is not None and pos.commit_lsn > 0 else 0

    # -- records -----------------------------------------------------------------------
    def _begin(self, data: dict[str, Any], offset: int) -> None:
        parting = data.get("partitioning") or {}
        column, n = parting.get("column"), int(parting.get("partitions") or 1)
        if n != self.partitions:
            raise ConfigError(f"topic {self.topic}: the snapshot was published for {n} partition(s) but the "
                              f"topic has {self.partitions}")
        if column is not None and column != self.config.column:
            raise ConfigError(f"topic {self.topic} is partitioned by tenant column {column!r} but this replica "
                              f"splits by {self.config.column!r}: use --tenant-column {column}")
        ident = state.SourceIdentity(system_identifier=str(data["system_identifier"]), database=str(data["database"]))
        state.check_source(self.hub, ident)
        self._close_router()
        publication = str(data["publication"])
        self._prepare(publication)
        assert self.hub_applier is not None
        removed = [t for t in list_tenants(self.config.pattern) if self._owns(t)]
        for tenant in removed:  # a new snapshot replaces this partition's tenant files
            delete_tenant(self.config.pattern, tenant)
        lsn = int(data["snapshot_lsn"])
        self.say(f"partition {self.partition}: snapshot {format_lsn(lsn)} begins"
                 + (f" ({len(removed)} tenant file(s) removed)" if removed else ""))
        with self.hub:
            state.write_source(self.hub, ident)
            state.write_stream(self.hub, state.StreamInfo(slot=str(data["slot"]), publication=publication))
            for (s, t), mapping in self.hub_applier.mappings.items():
                self.hub.execute(f"DELETE FROM {quote_ident(mapping.target)}")
                state.write_table(self.hub, state.TableState(table=f"{s}.{t}", snapshot="copying", snapshot_lsn=lsn))
            state.write_record(self.hub, SPLIT_SCOPE, SPLIT_NAME, {"status": "pending"})
            state.write_record(self.hub, keeper.RUN_SCOPE, keeper.RUN_NAME,
                               {"status": "copying", "consistent_lsn": lsn, "via": "kafka"})
            state.write_position(self.hub, state.Position(commit_lsn=0, end_lsn=0, kafka=self.kafka_pos(offset)))

    def _end(self, data: dict[str, Any], offset: int) -> None:
        lsn = int(data["snapshot_lsn"])
        with self.hub:
            for ts in state.read_tables(self.hub).values():
                state.write_table(self.hub, replace(ts, snapshot="done"))
            state.write_record(self.hub, keeper.RUN_SCOPE, keeper.RUN_NAME,
                               {"status": "done", "consistent_lsn": lsn, "via": "kafka"})
            state.write_position(self.hub, state.Position(commit_lsn=lsn, end_lsn=lsn, kafka=self.kafka_pos(offset)))
        self._split_and_route()

    def _heartbeat(self, lsn: int, offset: int) -> None:
        pos = state.read_position(self.hub)
        if pos is not None and pos.commit_lsn > 0 and lsn > (pos.watermark_lsn or 0):
            with self.hub:
                state.write_position(self.hub, replace(pos, watermark_lsn=lsn, kafka=self.kafka_pos(offset)))
            if self.metrics is not None:
                self.metrics.record_lag(reached_lsn=lsn, server_wal_end=0, commit_end_lsn=pos.end_lsn,
                                        commit_ts_ms=pos.commit_ts_ms)

    def feed(self, got: Sequence[Record], report: TenantKafkaReport) -> bool:
        """Apply this partition's records in offset order; True if any was not a heartbeat."""
        batch: list[Transaction] = []
        rows: list[ChangeEvent] = []
        last = -1
        news = False

        def flush() -> None:
            nonlocal batch, rows
            if rows:
                if self.hub_applier is None:
                    raise ConfigError(f"topic {self.topic} partition {self.partition} has snapshot rows before any "
                                      "snapshot-begin record: was it written by pg2edge publish?")
                self.hub_applier.apply([Transaction(xid=0, commit_lsn=0, end_lsn=0, commit_ts=0, events=tuple(rows))],
                                       kafka=self.kafka_pos(last), check_lsn=False)
                report.snapshot_rows += len(rows)
            if batch:
                if self.router is None:
                    raise ConfigError(f"topic {self.topic} partition {self.partition} has changes before a complete "
                                      "snapshot: was it written by pg2edge publish?")
                started = time.perf_counter()
                result = self.router.apply(batch, kafka=self.kafka_pos(last))
                if self.metrics is not None:
                    self.metrics.record_batch(batch, time.perf_counter() - started)
                    self.metrics.record_lag(reached_lsn=batch[-1].end_lsn, server_wal_end=0,
                                            commit_end_lsn=batch[-1].end_lsn, commit_ts_ms=batch[-1].commit_ts)
                report.transactions += result.transactions
                report.rows += result.rows
            batch, rows = [], []

        for record in got:
            if not self.guard.admit(record):
                continue
            item = self.regroup.feed(record)
            if isinstance(item, records.TxnItem):
                if rows:
                    flush()
                batch.append(item.txn)
                last = item.offset
                news = True
            elif isinstance(item, records.SnapshotItem):
                if batch:
                    flush()
                rows.append(item.event)
                last = item.offset
                news = True
            elif isinstance(item, records.ControlItem):
                flush()
                kind = item.data.get("type")
                if kind == "snapshot-begin":
                    self._begin(item.data, item.offset)
                elif kind == "snapshot-end":
                    self._end(item.data, item.offset)
                    self.say(f"partition {self.partition}: snapshot applied and split; streaming changes")
                elif kind == "heartbeat":
                    self._heartbeat(int(item.data["lsn"]), item.offset)
                news = news or kind != "heartbeat"
            else:
                news = True  # part of a transaction
        flush()
        return news

    def close(self) -> None:
        self._close_router()
        self.hub.close()


def _partitions(consumer: Consumer, topic: str, wanted: Sequence[int] | None) -> tuple[int, list[int]]:
    n = consumer.partition_count(topic)
    chosen = sorted(set(wanted)) if wanted else list(range(n))
    bad = [p for p in chosen if not 0 <= p < n]
    if bad:
        raise ConfigError(f"topic {topic} has partitions 0..{n - 1}; there is no partition {bad[0]}")
    return n, chosen


def run_tenant_kafka_replica(*, bootstrap: str, dsn: str, tenants: TenantsConfig, topic: str | None = None,
                             topic_prefix: str = "pg2edge", partitions: Sequence[int] | None = None,
                             group: str | None = None, client: str = "kafka-python",
                             options: TranslateConfig | None = None, until_caught_up: bool = False,
                             until_lsn: int | None = None, idle_seconds: float = 2.0, max_records: int = 5000,
                             stop: threading.Event | None = None, consumer: Consumer | None = None,
                             say: Say = print, metrics: Metrics | None = None) -> TenantKafkaReport:
    """Consume the change topic (all partitions, or ``partitions``) into one SQLite file per tenant.

    Stops like :func:`pipeline.kafka.replica.run_kafka_replica`: at ``until_lsn``, with
    ``until_caught_up`` at the source's current LSN or after ``idle_seconds`` without a change.
    ``metrics``: applied changes by table and op, batch latency and lag seconds (the slot's
    retained WAL is the publisher's metric).
    """
    options = options or TranslateConfig()
    topic = topic or records.topic_name(topic_prefix, identify_system(dsn).database)
    goal = until_lsn if until_lsn is not None else (current_wal_lsn(dsn) if until_caught_up else None)
    flag = StopFlag(stop)
    restore = flag.install()
    own = consumer is None
    consumer = consumer or make_consumer(client, bootstrap, group=group)
    parts: dict[int, _Partition] = {}
    try:
        n, chosen = _partitions(consumer, topic, partitions)
        report = TenantKafkaReport(topic=topic, partitions=chosen)
        max_open = max(1, tenants.max_open // len(chosen))
        for p in chosen:
            parts[p] = _Partition(topic=topic, partition=p, partitions=n, dsn=dsn, tenants=tenants, options=options,
                                  max_open=max_open, say=say, metrics=metrics)
            guard = parts[p].guard = start_guard(consumer, topic, stored_offset=parts[p].stored_offset(), partition=p)
            consumer.seek(topic, p, guard.expected)
        say(f"consuming {topic} partition(s) {','.join(map(str, chosen))} of {n} into {tenants.pattern}")
        last_news = last_commit = time.monotonic()
        while True:
            got = consumer.poll(timeout=0.2, max_records=max_records)
            by_partition: dict[int, list[Record]] = {}
            for record in got:
                by_partition.setdefault(record.partition, []).append(record)
            for p, recs in sorted(by_partition.items()):
                if parts[p].feed(recs, report):
                    last_news = time.monotonic()
            now = time.monotonic()
            if group and now - last_commit > 5.0:
                last_commit = now
                for p, part in parts.items():
                    consumer.commit(topic, p, part.guard.expected)
            if goal is not None and all(part.visible_lsn() >= goal for part in parts.values()):
                report.stopped_by = "caught up"
                break
            if until_caught_up and now - last_news >= idle_seconds \
                    and all(not part.regroup.pending and part.guard.read_to_start_end for part in parts.values()):
                for part in parts.values():
                    part.guard.missing()
                report.stopped_by = f"caught up with the topic (no change for {idle_seconds:g} s)"
                break
            if flag.event.is_set():
                report.stopped_by = flag.reason or "stop requested"
                break
        for p, part in parts.items():
            part._close_router()
            report.positions[p] = state.read_position(part.hub)
        report.tenants_created = sum(part.created for part in parts.values())
        report.peak_open_files = sum(part.peak for part in parts.values())
        return report
    finally:
        for part in parts.values():
            part.close()
        restore()
        if own:
            consumer.close()
