"""The Kafka sink (``pg2edge publish``): each batch sent to the change topic and flushed with acks=all.

The publisher's position (last commit sent and flushed, its watermark) lives in
its own small SQLite state file; it is written only after the producer flushed,
so the engine acknowledges to the slot only what the broker holds. A crash
before that re-sends from the slot's confirmed position: duplicates in the
topic, absorbed by the replicas' commit-LSN check.

Records: :mod:`pg2edge.pipeline.kafka.records`; a topic partitioned by tenant:
:mod:`pg2edge.pipeline.kafka.partitioning` (each partition gets its share of
every transaction; controls and heartbeats go to every partition).
"""

from __future__ import annotations

from collections.abc import Sequence

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.events import Control, SnapshotBegin, SnapshotEnd, SnapshotRows, Transaction, Watermark
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import Headers, Producer
from pg2edge.pipeline.kafka.partitioning import TenantPartitioning
from pg2edge.pipeline.sinks.base import ApplyResult

FLUSH_ROWS = 50_000  # snapshot rows sent between two flushes


class KafkaSink:
    def __init__(self, producer: Producer, topic: str, *, state_db: apsw.Connection,
                 partitioning: TenantPartitioning | None = None) -> None:
        self.producer, self.topic, self.db, self.parting = producer, topic, state_db, partitioning
        self.partitions = partitioning.partitions if partitioning else 1
        self.label = f"topic {topic}"
        self.events = 0
        self.snapshot_rows = 0
        self._unflushed = 0

    def _everywhere(self, record: tuple[bytes, bytes, Headers]) -> None:
        """A control record (snapshot bounds, heartbeat) goes to every partition."""
        k, v, h = record
        for p in range(self.partitions):
            self.producer.send(self.topic, value=v, key=k, headers=h, partition=p)

    # -- the sink protocol ---------------------------------------------------------------
    def position(self) -> state.Position | None:
        return state.read_position(self.db)

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        for txn in batch:
            for p, part in self.parting.split(txn).items() if self.parting else ((0, txn),):
                for k, v, h in records.transaction_records(part):
                    self.producer.send(self.topic, value=v, key=k, headers=h, partition=p)
            self.events += len(txn.events)
        self.producer.flush()  # acks=all for everything up to the batch's last commit
        last = batch[-1]
        pos = state.Position(commit_lsn=last.commit_lsn, end_lsn=last.end_lsn, xid=last.xid,
                             commit_ts_ms=last.commit_ts)
        with self.db:
            state.write_position(self.db, pos)
        return ApplyResult(applied=len(batch), rows=sum(len(t.events) for t in batch), position=pos)

    def control(self, item: Control) -> None:
        if isinstance(item, Watermark):
            self._everywhere(records.control_record("heartbeat", lsn=item.lsn))
            self.producer.flush()
            state.advance_watermark(self.db, item.lsn)
        elif isinstance(item, SnapshotBegin):
            self._everywhere(records.control_record("snapshot-begin", **item.to_dict()))
        elif isinstance(item, SnapshotRows):
            for ev in item.events:
                k, v, h = records.snapshot_record(ev)
                for p in self.parting.row_partitions(ev.table, ev.after or {}) if self.parting else (0,):
                    self.producer.send(self.topic, value=v, key=k, headers=h, partition=p)
            self.snapshot_rows += len(item.events)
            self._unflushed += len(item.events)
            if self._unflushed >= FLUSH_ROWS:
                self.producer.flush()
                self._unflushed = 0
        elif isinstance(item, SnapshotEnd):
            self._everywhere(records.control_record("snapshot-end", snapshot_lsn=item.snapshot_lsn))
            self.producer.flush()
            self._unflushed = 0

    def maintain(self) -> None:
        """Nothing: a publisher has no retry queue."""

    def close(self) -> None:
        """The caller owns the producer."""
