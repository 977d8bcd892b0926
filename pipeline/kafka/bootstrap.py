"""Where a Kafka replica may start, and never starting silently without the records it needs.

* An existing replica resumes at its stored offset + 1; if the topic's earliest
  available offset is above that (retention deleted records it has not
  applied), it stops with :class:`RecordsLostError`.
* A new replica starts at the earliest available offset and needs a
  ``snapshot-begin`` control to start from. If the first available record is
  not one (retention deleted the start of the snapshot), it skips records
  until the next ``snapshot-begin`` (a re-snapshot: ``pg2edge publish
  --resnapshot``); if the topic holds none up to its end at start, it stops
  with :class:`SnapshotMissingError`.
* Every received record must carry the next expected offset: a jump forward
  means records were deleted while the replica ran (:class:`RecordsLostError`),
  a jump back means the topic was recreated or truncated below the replica's
  position (:class:`TopicRewoundError`).
* :func:`seed_replica` creates a new replica as a consistent copy of a live
  one (SQLite online backup), position, retry queue and all.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import apsw

from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import Consumer, Record

log = logging.getLogger(__name__)


class RecordsLostError(Pg2EdgeError):
    """Records a Kafka replica still needs are no longer in the topic (retention deleted them)."""


class SnapshotMissingError(Pg2EdgeError):
    """A new Kafka replica found no ``snapshot-begin`` record to bootstrap from in the topic."""


class TopicRewoundError(Pg2EdgeError):
    """The topic restarted below the replica's position (it was recreated or truncated)."""


class SeedError(Pg2EdgeError):
    """A replica cannot be seeded from the given file (target in use, foreign or unpositioned seed)."""


def remedy(topic: str) -> str:
    """The two ways out, as told to the operator."""
    return ("Either create the replica as a copy of a live one: `pg2edge sync --from-kafka --seed-from LIVE.db "
            f"--target NEW.db --topic {topic} ...` (a new target file), or publish a fresh snapshot into the "
            "topic: `pg2edge publish --resnapshot ...` (every replica of the topic empties and reloads).")


def is_snapshot_begin(record: Record) -> bool:
    """A record a new replica may start at: a snapshot-begin, or the schema record published just before it."""
    return record.headers.get(records.KIND) == b"control" and record.key in (b"snapshot-begin", b"snapshot-schema")


@dataclass
class OffsetGuard:
    """Admits records in offset order; see the module docstring for what it refuses."""

    topic: str
    partition: int
    expected: int  # the next offset the replica must receive
    earliest: int
    end_at_start: int
    need_snapshot: bool  # a new replica: nothing applies before a snapshot-begin
    skipped: int = 0

    def _where(self) -> str:
        return f"topic {self.topic} partition {self.partition}"

    def admit(self, record: Record) -> bool:
        """True to apply ``record``; False to skip it (a new replica before its first snapshot-begin)."""
        if record.offset > self.expected:
            raise RecordsLostError(
                f"{self._where()}: this replica needs offset {self.expected} but the next available record is at "
                f"offset {record.offset}: records were deleted from the topic (retention) while it ran. "
                + remedy(self.topic))
        if record.offset < self.expected:
            raise TopicRewoundError(
                f"{self._where()}: expected offset {self.expected}, got offset {record.offset}: the topic was "
                "recreated or truncated below this replica's position. " + remedy(self.topic))
        self.expected = record.offset + 1
        if not self.need_snapshot:
            return True
        if is_snapshot_begin(record):
            self.need_snapshot = False
            if self.skipped:
                log.warning("%s: skipped %d records before the snapshot-begin at offset %d",
                            self._where(), self.skipped, record.offset)
            return True
        self.skipped += 1
        if record.offset >= max(self.end_at_start, self.earliest + 1) - 1:
            self.missing()
        return False

    @property
    def read_to_start_end(self) -> bool:
        """True once every record that existed at start was received. The broker's end offset may be
        low (Tansu reports the last batch's base offset + 1), never high, so this is a necessary
        condition for "caught up" (an idle stop must not happen before it)."""
        return self.expected >= self.end_at_start

    def missing(self) -> None:
        """Raise if this new replica has not found a snapshot-begin (called at the end of the topic, or idle)."""
        if self.need_snapshot and self.skipped:
            raise SnapshotMissingError(
                f"{self._where()}: a new replica needs a snapshot-begin record, but the first available record "
                f"(offset {self.earliest}) is not one and none follows up to offset {self.expected - 1}: retention "
                "deleted the snapshot (or the topic was not written by `pg2edge publish`). " + remedy(self.topic))


def start_guard(consumer: Consumer, topic: str, *, stored_offset: int | None, partition: int = 0) -> OffsetGuard:
    """The guard for a replica whose last applied offset is ``stored_offset`` (None: a new replica).

    Raises :class:`RecordsLostError` when records after ``stored_offset`` are gone.
    """
    earliest, end = consumer.watermarks(topic, partition)
    if stored_offset is None:
        return OffsetGuard(topic, partition, expected=earliest, earliest=earliest, end_at_start=end,
                           need_snapshot=True)
    start = stored_offset + 1
    if start < earliest:
        raise RecordsLostError(
            f"topic {topic} partition {partition}: this replica needs offset {start} but the earliest available "
            f"offset is {earliest}: retention deleted {earliest - start} record(s) it has not applied; it cannot "
            "continue without losing changes. " + remedy(topic))
    return OffsetGuard(topic, partition, expected=start, earliest=earliest, end_at_start=end, need_snapshot=False)


def _remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def seed_replica(*, seed: str | Path, target: str | Path, topic: str,
                 source: state.SourceIdentity | None) -> state.Position:
    """Create ``target`` as a consistent copy of the replica ``seed`` (which may be live); return its position.

    Refuses a target that already has a position, a seed without a Kafka position on ``topic``, and a seed
    filled from another source (``source``, when known).
    """
    seed, target = Path(seed), Path(target)
    if not seed.is_file():
        raise SeedError(f"seed replica {seed} does not exist")
    if target.exists():
        existing = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            if state.read_position(existing) is not None:
                raise SeedError(f"target {target} already has a position: --seed-from only creates a new replica "
                                "(remove the file to replace it)")
        finally:
            existing.close()
    src = apsw.Connection(str(seed), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        src.setbusytimeout(5000)
        pos = state.read_position(src)
        if pos is None or not pos.kafka:
            raise SeedError(f"seed replica {seed} has no Kafka position: seed from a replica of `sync --from-kafka`")
        if pos.kafka.get("topic") != topic:
            raise SeedError(f"seed replica {seed} follows topic {pos.kafka.get('topic')}, not {topic}")
        known = state.read_source(src)
        if source is not None and known is not None and known != source:
            raise SeedError(f"seed replica {seed} belongs to database {known.database!r} of cluster "
                            f"{known.system_identifier}, not {source.database!r} of cluster "
                            f"{source.system_identifier}")
        tmp = target.with_name(target.name + ".seeding")
        _remove_sqlite_file(tmp)
        dst = apsw.Connection(str(tmp))
        try:
            # one step: a consistent read snapshot of the seed; in WAL mode its writer is not blocked
            with dst.backup("main", src, "main") as backup:
                backup.step(-1)
            copied = state.read_position(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to move; WAL again on open
        finally:
            dst.close()
    finally:
        src.close()
    assert copied is not None and copied.kafka
    for suffix in ("-wal", "-shm", "-journal"):  # a stale WAL next to the new file would corrupt it
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, target)
    log.info("seeded %s from %s at %s offset %s", target, seed, topic, copied.kafka.get("offset"))
    return copied
