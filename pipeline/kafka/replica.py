"""A replica fed from the Kafka topic: regroup whole transactions, apply them exactly once.

The consumed offset and the commit LSN are stored in the replica's state table
(``Position.kafka = {topic, partition, offset}``) in the same SQLite
transaction as the data; on start the consumer seeks to the next offset
(``assign`` + ``seek``; committed group offsets are advisory only). Records
re-sent by a restarted publisher are skipped by the LSN check. The schema
(tables, value codec) is read from the source catalog (``dsn``); rows come
only from the topic. Changes that cannot be applied go to the retry queue /
DLQ (:mod:`pipeline.retry`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import keeper, state
from pg2edge.pipeline.applier import TableMapping, open_replica
from pg2edge.pipeline.daemon import StopFlag, build_mappings, current_wal_lsn
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.bootstrap import seed_replica, start_guard
from pg2edge.pipeline.kafka.client import Consumer, make_consumer
from pg2edge.pipeline.kafka.queue_topics import QueueMirror
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.replication import identify_system
from pg2edge.pipeline.retry import QUEUE_TABLE, QueueingApplier, RetryPolicy
from pg2edge.pipeline.retry import counts as retry_counts
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)


@dataclass
class ReplicaReport:
    topic: str
    transactions: int = 0
    rows: int = 0
    snapshot_rows: int = 0
    skipped: int = 0
    parked: int = 0
    position: state.Position | None = None
    stopped_by: str = "caught up"


class _Replica:
    def __init__(self, db: apsw.Connection, *, dsn: str | None, topic: str, options: TranslateConfig,
                 policy: RetryPolicy | None, metrics: Any = None) -> None:
        self.db, self.dsn, self.topic, self.options, self.policy = db, dsn, topic, options, policy
        self.metrics = metrics
        self.applier: QueueingApplier | None = None
        names = state.read_stream(db)
        if names is not None:
            self._mappings(names.publication)

    def _mappings(self, publication: str) -> QueueingApplier:
        if self.dsn is None:
            raise ConfigError("a Kafka replica needs --source (read-only catalog access) for the schema and codec")
        mappings: dict[tuple[str, str], TableMapping] = build_mappings(self.dsn, self.db, publication, self.options)
        self.applier = QueueingApplier(self.db, mappings, policy=self.policy)
        return self.applier

    def kafka_pos(self, offset: int) -> dict[str, Any]:
        return {"topic": self.topic, "partition": 0, "offset": offset}

    def control(self, data: dict[str, Any], offset: int, say: Callable[[str], None]) -> None:
        kind = data.get("type")
        if kind == "snapshot-begin":
            parting = data.get("partitioning") or {}
            if int(parting.get("partitions") or 1) > 1:
                raise ConfigError(
                    f"topic {self.topic} is partitioned by tenant column {parting.get('column')!r} into "
                    f"{parting['partitions']} partitions: consume it into tenant files with "
                    "`pg2edge sync --from-kafka --tenant-pattern ...`")
            ident = state.SourceIdentity(system_identifier=str(data["system_identifier"]),
                                         database=str(data["database"]))
            state.check_source(self.db, ident)
            applier = self._mappings(str(data["publication"]))
            say(f"snapshot {format_lsn(int(data['snapshot_lsn']))} begins: emptying replica tables")
            with self.db:
                state.write_source(self.db, ident)
                state.write_stream(self.db, state.StreamInfo(slot=str(data["slot"]),
                                                             publication=str(data["publication"])))
                for mapping in applier.mappings.values():
                    self.db.execute(f"DELETE FROM {quote_ident(mapping.target)}")
                self.db.execute(f"DELETE FROM {quote_ident(QUEUE_TABLE)}")
                for s, t in applier.mappings:
                    state.write_table(self.db, state.TableState(table=f"{s}.{t}", snapshot="copying",
                                                                snapshot_lsn=int(data["snapshot_lsn"])))
                state.write_record(self.db, keeper.RUN_SCOPE, keeper.RUN_NAME, {
                    "status": "copying", "consistent_lsn": int(data["snapshot_lsn"]), "via": "kafka"})
                state.write_position(self.db, state.Position(commit_lsn=0, end_lsn=0, kafka=self.kafka_pos(offset)))
        elif kind == "snapshot-end":
            lsn = int(data["snapshot_lsn"])
            with self.db:
                for ts in state.read_tables(self.db).values():
                    state.write_table(self.db, replace(ts, snapshot="done"))
                state.write_record(self.db, keeper.RUN_SCOPE, keeper.RUN_NAME, {
                    "status": "done", "consistent_lsn": lsn, "via": "kafka"})
                state.write_position(self.db, state.Position(commit_lsn=lsn, end_lsn=lsn,
                                                             kafka=self.kafka_pos(offset)))
            say(f"snapshot {format_lsn(lsn)} applied; streaming changes")
        elif kind == "heartbeat":
            pos = state.read_position(self.db)
            lsn = int(data["lsn"])
            if pos is not None and pos.commit_lsn > 0 and lsn > (pos.watermark_lsn or 0):
                with self.db:
                    state.write_position(self.db, replace(pos, watermark_lsn=lsn, kafka=self.kafka_pos(offset)))

    def apply(self, batch: list[Transaction], offset: int, *, snapshot: bool = False) -> Any:
        if self.applier is None:
            raise ConfigError(f"topic {self.topic} has changes before any snapshot-begin record: "
                              "was it written by pg2edge publish?")
        started = time.perf_counter()
        result = self.applier.apply(batch, kafka=self.kafka_pos(offset), check_lsn=not snapshot)
        if self.metrics is not None:
            from pg2edge.pipeline.retry import counts

            self.metrics.record_batch(batch, time.perf_counter() - started)
            self.metrics.record_queue(counts(self.db))
            pos = result.position
            if pos is not None and pos.commit_ts_ms:
                self.metrics.lag_seconds.set(max(0.0, time.time() - pos.commit_ts_ms / 1000.0))
        return result


def run_kafka_replica(*, bootstrap: str, target: str | Path, dsn: str | None = None, topic: str | None = None,
                      group: str | None = None, topic_prefix: str = "pg2edge", options: TranslateConfig | None = None,
                      policy: RetryPolicy | None = None, until_caught_up: bool = False, until_lsn: int | None = None,
                      idle_seconds: float = 2.0,
                      stop: threading.Event | None = None, consumer: Consumer | None = None,
                      client: str = "kafka-python", max_records: int = 5000, seed_from: str | Path | None = None,
                      say: Callable[[str], None] = print, metrics: Any = None) -> ReplicaReport:
    """Consume the change topic into ``target`` until stopped.

    ``until_lsn``: stop once the replica has applied (or, by a heartbeat, seen) that source LSN.
    ``until_caught_up``: stop at the source's current LSN (needs ``dsn`` and a running publisher),
    or once the topic brought no row change for ``idle_seconds`` (the publisher may be stopped) after every
    record that was in the topic at start was read.
    ``seed_from``: create the (new) ``target`` as a copy of this live replica first, then continue from its
    offset. Records the replica needs that the topic no longer holds stop it with a named error
    (:mod:`pipeline.kafka.bootstrap`).
    """
    options = options or TranslateConfig()
    if topic is None:
        if dsn is None:
            raise ConfigError("give --topic or --source (the topic is <prefix>.<database>.changes)")
        topic = records.topic_name(topic_prefix, identify_system(dsn).database)
    report = ReplicaReport(topic=topic)
    goal = until_lsn
    if until_caught_up and goal is None:
        if dsn is None:
            raise ConfigError("--until-caught-up needs --source")
        goal = current_wal_lsn(dsn)
    if seed_from is not None:
        ident = None
        if dsn is not None:
            sysid = identify_system(dsn)
            ident = state.SourceIdentity(system_identifier=sysid.system_identifier, database=sysid.database)
        seeded = seed_replica(seed=seed_from, target=target, topic=topic, source=ident)
        say(f"seeded {target} from {seed_from} at offset {seeded.kafka['offset'] if seeded.kafka else '-'}")
    db = open_replica(target)
    flag = StopFlag(stop)
    restore = flag.install()
    own = consumer is None
    consumer = consumer or make_consumer(client, bootstrap, group=group)
    mirror: QueueMirror | None = None
    try:
        rep = _Replica(db, dsn=dsn, topic=topic, options=options, policy=policy, metrics=metrics)
        mirror = QueueMirror(bootstrap=bootstrap, topic=topic, replica=group or Path(target).name, client=client)
        pos = state.read_position(db)
        stored = int(pos.kafka["offset"]) if pos and pos.kafka and pos.kafka.get("topic") == topic else None
        guard = start_guard(consumer, topic, stored_offset=stored)
        consumer.seek(topic, 0, guard.expected)
        say(f"consuming {topic} from offset {guard.expected}")
        regroup = records.Regrouper()
        last_commit = last_data = time.monotonic()
        while True:
            got = consumer.poll(timeout=0.2, max_records=max_records)
            batch: list[Transaction] = []
            rows: list[Any] = []
            last = -1

            def flush() -> None:
                nonlocal batch, rows
                if rows:
                    res = rep.apply([Transaction(xid=0, commit_lsn=0, end_lsn=0, commit_ts=0, events=tuple(rows))],
                                    last, snapshot=True)  # noqa: B023 (replaced by the engine)
                    report.snapshot_rows += res.rows
                if batch:
                    res = rep.apply(batch, last)  # noqa: B023
                    report.transactions += res.applied
                    report.skipped += res.skipped
                    report.rows += res.rows
                batch, rows = [], []

            for record in got:
                if not guard.admit(record):
                    continue
                item = regroup.feed(record)
                if not isinstance(item, records.ControlItem) or item.data.get("type") != "heartbeat":
                    last_data = time.monotonic()
                if isinstance(item, records.TxnItem):
                    if rows:
                        flush()
                    batch.append(item.txn)
                    last = item.offset
                elif isinstance(item, records.SnapshotItem):
                    if batch:
                        flush()
                    rows.append(item.event)
                    last = item.offset
                elif isinstance(item, records.ControlItem):
                    flush()
                    rep.control(item.data, item.offset, say)
            flush()
            applier = rep.applier
            if applier is not None:
                due = applier.next_due()
                if due is not None and due <= time.time():
                    applier.drain()
                report.parked = applier.parked
                if mirror.announced or any(retry_counts(db).values()):
                    mirror.sync(db)
            now = time.monotonic()
            if now - last_commit > 5.0:
                last_commit = now
                cur = state.read_position(db)
                if cur and cur.kafka:
                    consumer.commit(topic, 0, int(cur.kafka["offset"]) + 1)
            if goal is not None:
                cur = state.read_position(db)
                if cur is not None and cur.commit_lsn > 0 and cur.visible_lsn >= goal:
                    report.stopped_by = "caught up"
                    break
            if until_caught_up and not regroup.pending and now - last_data >= idle_seconds \
                    and guard.read_to_start_end:
                guard.missing()
                report.stopped_by = f"caught up with the topic (no change for {idle_seconds:g} s)"
                break
            if flag.event.is_set():
                report.stopped_by = flag.reason or "stop requested"
                break
        report.position = state.read_position(db)
        return report
    finally:
        restore()
        if mirror is not None:
            mirror.close()
        if own:
            consumer.close()
        db.close()
