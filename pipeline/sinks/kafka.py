"""The Kafka sink (``pg2edge publish``): each batch sent to the change topic, acknowledged with acks=all.

The publisher's position (last commit the broker acknowledged, its watermark)
lives in its own small SQLite state file; it is written only once the broker
acknowledged every record up to that commit, so the engine acknowledges to the
slot only what the broker holds. A crash before that re-sends from the slot's
confirmed position: duplicates in the topic, absorbed by the replicas'
commit-LSN check.

Pipelined: ``apply`` sends a batch and returns without waiting for the broker;
the acknowledgements are counted at the next turns (``durable``), so the slot is
read while the broker stores the previous batch. A batch that carries a schema
record or a schema change is still flushed before ``apply`` returns (the schema
tracker stores what it published only once it is in the topic), and so is every
control item (heartbeat, snapshot bounds).

Records: :mod:`pg2edge.pipeline.kafka.records` (``envelope``: ``batch``, many
whole transactions per record, or ``row``, one Debezium-style record per
change); schema records (:mod:`pg2edge.pipeline.kafka.schema`) go before each
snapshot and before the first transaction that shows a table in a new shape, so
replicas need no source access. A topic partitioned by tenant:
:mod:`pg2edge.pipeline.kafka.partitioning` (each partition gets its share of
every transaction; controls and heartbeats go to every partition).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import apsw

from pg2edge.pipeline import schema_apply, state
from pg2edge.pipeline.events import (
    ChangeEvent,
    Control,
    SnapshotBegin,
    SnapshotEnd,
    SnapshotRows,
    Transaction,
    Watermark,
)
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import Headers, Producer
from pg2edge.pipeline.kafka.partitioning import TenantPartitioning
from pg2edge.pipeline.kafka.schema import SchemaTracker
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.walsync import WalSync

FLUSH_ROWS = 50_000  # snapshot rows sent between two flushes
MAX_UNACKED_BATCHES = 64  # sent batches waiting for the broker before apply waits for them


@dataclass(frozen=True, slots=True)
class _Sent:
    records: int  # the producer's send count once this batch was sent
    position: state.Position


class KafkaSink:
    def __init__(self, producer: Producer, topic: str, *, state_db: apsw.Connection,
                 partitioning: TenantPartitioning | None = None, envelope: str = "batch",
                 schema: SchemaTracker | None = None) -> None:
        self.producer, self.topic, self.db, self.parting = producer, topic, state_db, partitioning
        self.partitions = partitioning.partitions if partitioning else 1
        self.label = f"topic {topic}"
        self.envelope, self.schema = envelope, schema
        self.events = 0
        self.snapshot_rows = 0
        self.records = 0
        self._unflushed = 0
        self._schema_docs: list[dict[str, Any]] = []  # published, remembered once flushed
        self.sync = WalSync(state_db)  # the position row commits without waiting for its own fsync
        self._ddl = False  # schema changes published: the tracker's baselines are stored once flushed
        self._unacked: deque[_Sent] = deque()  # sent batches, oldest first, not yet acknowledged by the broker

    def _send(self, record: tuple[bytes | None, bytes, Headers], partition: int) -> None:
        k, v, h = record
        self.producer.send(self.topic, value=v, key=k, headers=h, partition=partition)
        self.records += 1

    def _everywhere(self, record: tuple[bytes | None, bytes, Headers]) -> None:
        """A control record (schema, snapshot bounds, heartbeat) goes to every partition."""
        for p in range(self.partitions):
            self._send(record, p)

    def _settle(self) -> None:
        """Store the position of the newest sent batch the broker acknowledged whole (never blocks)."""
        if not self._unacked:
            return
        acked = self.producer.acked()
        done: state.Position | None = None
        while self._unacked and self._unacked[0].records <= acked:
            done = self._unacked.popleft().position
        if done is not None:
            with self.db:
                state.write_position(self.db, done)
            self.sync.committed(done)

    def _flush(self) -> None:
        self.producer.flush()
        self._settle()
        if (self._schema_docs or self._ddl) and self.schema is not None:
            with self.db:
                for doc in self._schema_docs:
                    self.schema.remember(doc)
                if self._ddl:
                    self.schema.remember_baselines()
        self._schema_docs = []
        self._ddl = False

    def _schema(self, doc: dict[str, Any]) -> None:
        self._everywhere(records.schema_record(doc))
        self._schema_docs.append(doc)

    def publish_schema(self, doc: dict[str, Any]) -> None:
        """Send a schema record now (flushed)."""
        self._schema(doc)
        self._flush()

    # -- the sink protocol ---------------------------------------------------------------
    def position(self) -> state.Position | None:
        """The last commit the broker acknowledged (with every record before it)."""
        return state.read_position(self.db)

    def durable(self, *, wait: bool = False) -> state.Position | None:
        """The records are durable in the topic (acks=all) before the position row commits; that row
        counts once the state file's WAL is synced (:mod:`.walsync`). ``wait``: flush the producer first."""
        if wait:
            self._flush()
        else:
            self._settle()
        return self.sync.durable(wait=wait)

    def _send_txns(self, txns: Sequence[Transaction]) -> None:
        parts: dict[int, list[Transaction]] = {}
        for txn in txns:
            for p, part in self.parting.split(txn).items() if self.parting else ((0, txn),):
                parts.setdefault(p, []).append(part)
        for p, todo in sorted(parts.items()):
            if self.envelope == "row":
                for part in todo:
                    for record in records.transaction_records(part):
                        self._send(record, p)
            else:
                for brecord in records.batch_records(todo):
                    self._send(brecord, p)

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        pending: list[Transaction] = []
        for txn in batch:
            rels = txn.relations
            if self.parting is not None and txn.schema_changes:  # tenant partitions: not carried yet (the
                txn = replace(txn, schema_changes=())  # changes' places refer to the whole transaction); the
                # Relation messages send schema records, as before DDL capture
            if txn.schema_changes and self.schema is not None:  # source DDL travels in its transaction
                covered = schema_apply.described_by_changes(txn)  # (the replica follows it at its position)
                rels = tuple(r for r in rels if (r.schema, r.name) not in covered)
                txn = self.schema.annotate(txn)
                self._ddl = True
            doc = self.schema.changed(rels) if self.schema is not None and rels else None
            if doc is not None:  # the new shape goes before the first transaction that uses it
                self._send_txns(pending)
                pending = []
                self._schema(doc)
            pending.append(txn)
            self.events += len(txn.events)
        self._send_txns(pending)
        last = batch[-1]
        pos = state.Position(commit_lsn=last.commit_lsn, end_lsn=last.end_lsn, xid=last.xid,
                             commit_ts_ms=last.commit_ts)
        self._unacked.append(_Sent(records=self.records, position=pos))
        if self._schema_docs or self._ddl or len(self._unacked) > MAX_UNACKED_BATCHES:
            self._flush()  # acks=all for everything up to the batch's last commit
        else:
            self._settle()  # what the broker acknowledged meanwhile; the rest at the next turns
        return ApplyResult(applied=len(batch), rows=sum(len(t.events) for t in batch), position=pos)

    def control(self, item: Control) -> None:
        if isinstance(item, Watermark):
            self._everywhere(records.control_record("heartbeat", lsn=item.lsn))
            self._flush()
            state.advance_watermark(self.db, item.lsn)
        elif isinstance(item, SnapshotBegin):
            if self.schema is not None:
                self._schema(self.schema.snapshot_record([(s, t) for s, _, t in (q.partition(".")
                                                                                  for q in item.tables)]))
            self._everywhere(records.control_record("snapshot-begin", **item.to_dict()))
        elif isinstance(item, SnapshotRows):
            by_partition: dict[int, list[ChangeEvent]] = {}
            for ev in item.events:
                for p in self.parting.row_partitions(ev.table, ev.after or {}) if self.parting else (0,):
                    by_partition.setdefault(p, []).append(ev)
            for p, events in sorted(by_partition.items()):
                if self.envelope == "row":
                    for ev in events:
                        self._send(records.snapshot_record(ev), p)
                else:
                    for record in records.rows_records(events):
                        self._send(record, p)
            self.snapshot_rows += len(item.events)
            self._unflushed += len(item.events)
            if self._unflushed >= FLUSH_ROWS:
                self._flush()
                self._unflushed = 0
        elif isinstance(item, SnapshotEnd):
            self._everywhere(records.control_record("snapshot-end", snapshot_lsn=item.snapshot_lsn))
            self._flush()
            self._unflushed = 0

    def maintain(self) -> None:
        """Nothing: a publisher has no retry queue."""

    def close(self) -> None:
        """Sync the state file; the caller owns the producer."""
        self.sync.durable(wait=True)
