"""The Kafka source: records of ``pg2edge publish`` -> whole transactions and typed control items.

Each partition consumed is read in offset order through its
:class:`~pg2edge.pipeline.kafka.bootstrap.OffsetGuard` (records lost to
retention, a rewound topic, a new replica without a snapshot-begin: each stops
it by name) and regrouped into whole transactions
(:class:`~pg2edge.pipeline.kafka.records.Regrouper`). Every item carries its
cursor ``{topic, partition, offset}``, which the sink stores with the data; a
restart seeks each partition to its stored offset + 1.

Control records become typed items: ``snapshot-schema``/``schema`` ->
SchemaRecord, ``snapshot-begin`` -> SnapshotBegin, ``op: "r"`` rows (one per
record, or a batch record of them) -> SnapshotRows, ``snapshot-end`` ->
SnapshotEnd and ``heartbeat`` -> Watermark. A record the replica cannot read
(not pg2edge's, a newer format version) -> Unreadable, named by topic,
partition and offset: the sink parks it.

Finished (``--until-caught-up``) at ``until_lsn``: a partition stops at the first
item that reaches it (so every replica of a topic stops at the same offset), or
once no row change came for ``idle_seconds`` after every record that was in the
topic at start was read (the publisher may be stopped) and the replica found its
snapshot (a replica started before the publisher waits for it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from pg2edge.errors import ConfigError
from pg2edge.pipeline.events import (
    ChangeEvent,
    Cursor,
    Item,
    SchemaRecord,
    SnapshotBegin,
    SnapshotEnd,
    SnapshotRows,
    Unreadable,
    Watermark,
)
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.bootstrap import OffsetGuard, start_guard
from pg2edge.pipeline.kafka.client import Consumer, Record
from pg2edge.pipeline.state import Position

COMMIT_INTERVAL = 5.0  # seconds between two advisory consumer-group commits


def unreadable(record: Record, reason: str, cursor: Cursor) -> Unreadable:
    """A record the replica cannot read, named and kept (its value as text, at most 64 KiB) for the DLQ."""
    def text(b: bytes | None) -> str | None:
        return None if b is None else b[:65536].decode("utf-8", "backslashreplace")

    raw = {"topic": record.topic, "partition": record.partition, "offset": record.offset, "key": text(record.key),
           "value": text(record.value), "headers": {k: text(v) for k, v in record.headers.items()}}
    return Unreadable(f"topic {record.topic} partition {record.partition} offset {record.offset}", reason, raw,
                      cursor=cursor)


def choose_partitions(consumer: Consumer, topic: str, wanted: Sequence[int] | None) -> tuple[int, list[int]]:
    """(the topic's partition count, the partitions to consume: ``wanted`` or all), checked."""
    n = consumer.partition_count(topic)
    chosen = sorted(set(wanted)) if wanted else list(range(n))
    bad = [p for p in chosen if not 0 <= p < n]
    if bad:
        raise ConfigError(f"topic {topic} has partitions 0..{n - 1}; there is no partition {bad[0]}")
    return n, chosen


class KafkaSource:
    def __init__(self, consumer: Consumer, topic: str, *, stored_offsets: Mapping[int, int | None],
                 until_caught_up: bool = False, until_lsn: int | None = None, idle_seconds: float = 2.0,
                 max_records: int = 5000, group: str | None = None) -> None:
        self.consumer, self.topic, self.group = consumer, topic, group
        self.label = f"topic {topic}"
        self.until_caught_up, self.until_lsn, self.idle_seconds = until_caught_up, until_lsn, idle_seconds
        self.max_records = max_records
        self.guards: dict[int, OffsetGuard] = {}
        self.regroup: dict[int, records.Regrouper] = {}
        for p, stored in sorted(stored_offsets.items()):
            guard = self.guards[p] = start_guard(consumer, topic, stored_offset=stored, partition=p)
            self.regroup[p] = records.Regrouper()
            consumer.seek(topic, p, guard.expected)
        self._last_data = self._last_commit = time.monotonic()
        self._reached: set[int] = set()  # partitions that delivered an item at or past until_lsn
        self._batched = False  # the topic is written in the batch envelope

    def describe(self) -> str:
        return ", ".join(f"partition {p} from offset {g.expected}" for p, g in self.guards.items())

    # -- engine protocol ----------------------------------------------------------------
    def tick(self) -> None:
        """Nothing: the publisher sends the heartbeats."""

    def poll(self, *, max_wait: float) -> list[Item]:
        # a batch record holds up to records.MAX_EVENTS changes: fewer records per poll keep a turn's size alike
        limit = max(1, self.max_records // 100) if self._batched else self.max_records
        got = self.consumer.poll(timeout=max_wait, max_records=limit)
        by_partition: dict[int, list[Record]] = {}
        for record in got:
            by_partition.setdefault(record.partition, []).append(record)
        items: list[Item] = []
        for p, recs in sorted(by_partition.items()):
            items.extend(self._items(p, recs))
        return items

    def _items(self, partition: int, recs: Sequence[Record]) -> list[Item]:
        guard, regroup = self.guards[partition], self.regroup[partition]
        out: list[Item] = []
        rows: list[ChangeEvent] = []
        last: Cursor | None = None

        def flush_rows() -> None:
            nonlocal rows
            if rows:
                out.append(SnapshotRows(tuple(rows), cursor=last))
                rows = []

        for record in recs:
            if partition in self._reached:
                break  # stop exactly at the first record that reaches until_lsn (a deterministic end offset)
            if not guard.admit(record):
                continue
            if record.headers.get(records.KIND) in (records.TXNS, records.ROWS):
                self._batched = True
            for item in regroup.feed(record):
                cursor = {"topic": self.topic, "partition": partition, "offset": item.offset}
                if not (isinstance(item, records.ControlItem) and item.data.get("type") == "heartbeat"):
                    self._last_data = time.monotonic()
                if isinstance(item, records.SnapshotItem):
                    rows.extend(item.events)
                    last = cursor
                    continue
                flush_rows()
                if isinstance(item, records.TxnItem):
                    out.append(replace(item.txn, cursor=cursor))
                    self._check_goal(partition, item.txn.end_lsn)
                elif isinstance(item, records.ControlItem):
                    control = self._control(item.data, cursor)
                    out.append(control)
                    if isinstance(control, Watermark):
                        self._check_goal(partition, control.lsn)
                else:
                    out.append(unreadable(item.record, item.reason, cursor))
        flush_rows()
        return out

    def _check_goal(self, partition: int, lsn: int) -> None:
        if self.until_lsn is not None and lsn >= self.until_lsn:
            self._reached.add(partition)

    def _control(self, data: Mapping[str, object], cursor: Cursor) -> Item:
        kind = data.get("type")
        if kind in ("snapshot-schema", "schema"):
            return SchemaRecord(dict(data), cursor=cursor)
        if kind == "snapshot-begin":
            return SnapshotBegin.from_dict(data, cursor=cursor)
        if kind == "snapshot-end":
            return SnapshotEnd(int(str(data["snapshot_lsn"])), cursor=cursor)
        return Watermark(int(str(data["lsn"])), cursor=cursor)

    def ack(self, position: Position) -> None:
        """Offsets are stored with the data; the consumer group's offsets are advisory (committed now and then)."""
        now = time.monotonic()
        if self.group and now - self._last_commit > COMMIT_INTERVAL:
            self._last_commit = now
            for p, guard in self.guards.items():
                self.consumer.commit(self.topic, p, guard.expected)

    def finished(self, reached: Position | None) -> str | None:
        if self.until_lsn is not None and reached is not None and reached.commit_lsn > 0 \
                and reached.visible_lsn >= self.until_lsn:
            return "caught up"
        if self.until_caught_up and time.monotonic() - self._last_data >= self.idle_seconds \
                and all(not r.pending for r in self.regroup.values()) \
                and all(g.read_to_start_end for g in self.guards.values()) \
                and not any(g.need_snapshot and not g.skipped for g in self.guards.values()):  # nothing yet: wait
            for guard in self.guards.values():
                guard.missing()
            return f"caught up with the topic (no change for {self.idle_seconds:g} s)"
        return None

    @property
    def server_wal_end(self) -> int:
        return 0

    @property
    def retained_wal_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        """The caller owns the consumer."""
