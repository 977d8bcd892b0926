"""Kafka records of the change stream, and regrouping them into whole source transactions.

Two envelopes (``pg2edge publish --envelope``), both read by every replica:

* ``batch`` (the default, for pg2edge's own replicas): one record carries many
  changes, always of whole transactions (a transaction larger than
  ``MAX_EVENTS`` changes or ``MAX_BYTES`` of JSON spans several records, as numbered fragments); the producer
  compresses the record batches. Header ``pg2edge.kind``: ``txns`` (value
  ``{"v": 1, "txns": [[xid, commit_lsn, end_lsn, commit_ts_ms, first_index, count,
  relations | null, [event, ...], schema_changes | null], ...]}``; ``schema_changes``, on a
  transaction's first fragment only, are its source DDL statements as
  ``SchemaChange.to_dict()``, each placed by its ``index`` among the events; absent in topics written
  before schema changes travelled) or ``rows`` (snapshot rows: ``{"v": 1,
  "rows": [event, ...]}``); an event is the list ``[op, lsn, commit_lsn, txId,
  ts_ms, schema, table, snapshot, before, after, key]`` of the envelope below.
* ``row`` (Debezium-style, for other consumers): every record's value is one
  ``ChangeEvent`` JSON envelope; its key is the JSON of the primary-key columns.
  ``pg2edge.kind``: ``change`` (CDC) or ``snapshot`` (an ``op: "r"`` row);
  ``pg2edge.txn`` on changes: ``commit_lsn:end_lsn:xid:commit_ts_ms:index:count``
  (a consumer applies a transaction only once all ``count`` events are there);
  ``pg2edge.relations`` on a transaction's first event when PostgreSQL sent table
  descriptions (schema drift detection on the replica), and ``pg2edge.ddl`` (a JSON list of
  ``SchemaChange.to_dict()``) when the transaction holds source DDL. A transaction with DDL but no row
  change travels as one ``txns`` record (the batch envelope) even here.

Control records (``pg2edge.kind: control``, both envelopes; the key is the type):
``snapshot-schema`` / ``schema`` (:mod:`pipeline.kafka.schema`: the tables,
codec options and table selection, before a snapshot and when a table's shape
changes), ``snapshot-begin`` {slot, publication, database, system_identifier,
snapshot_lsn, tables} (a replica empties its tables), ``snapshot-end``
{snapshot_lsn} (the replica's position becomes the snapshot LSN) and
``heartbeat`` {lsn} (everything below ``lsn`` is published: the watermark).

A record that is not pg2edge's (no ``pg2edge.kind``, an unknown kind or control
type, unreadable JSON) or from a newer format version becomes a
:class:`BadItem` naming why: the replica parks it and goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pg2edge.pipeline.events import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Op,
    SchemaChange,
    Transaction,
    _row_from_json,
    _row_to_json,
    change_event,
    source_info,
)
from pg2edge.pipeline.kafka.client import Headers, Record
from pg2edge.pipeline.sources.pgoutput import Column, Relation, ReplicaIdentity

KIND, TXN, RELATIONS, DDL = "pg2edge.kind", "pg2edge.txn", "pg2edge.relations", "pg2edge.ddl"
CHANGE, SNAPSHOT, CONTROL, TXNS, ROWS = b"change", b"snapshot", b"control", b"txns", b"rows"
VERSION = 1  # of the batch envelope and of control records
ENVELOPES = ("batch", "row")
MAX_EVENTS = 2000  # changes per batch record (a larger transaction spans several records)
MAX_BYTES = 512 * 1024  # JSON per batch record, before compression (Kafka's default message.max.bytes is 1 MB)
CONTROLS = ("snapshot-schema", "schema", "snapshot-begin", "snapshot-end", "heartbeat")


def topic_name(prefix: str, database: str) -> str:
    return f"{prefix}.{database}.changes"


def key_bytes(event: ChangeEvent) -> bytes:
    return json.dumps(dict(event.key), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _relation_json(rel: Relation) -> dict[str, Any]:
    return {"relid": rel.relid, "schema": rel.schema, "name": rel.name, "identity": rel.replica_identity.value,
            "columns": [[c.name, c.type_oid, c.type_modifier, c.is_key] for c in rel.columns]}


def _relation_from(data: dict[str, Any]) -> Relation:
    return Relation(relid=int(data["relid"]), schema=data["schema"], name=data["name"],
                    replica_identity=ReplicaIdentity(data["identity"]),
                    columns=tuple(Column(str(n), int(o), int(m), bool(k)) for n, o, m, k in data["columns"]))


# -- the row envelope ------------------------------------------------------------------------
def transaction_records(txn: Transaction) -> Iterator[tuple[bytes | None, bytes, Headers]]:
    """(key, value, headers) of each event of ``txn``, in order (the row envelope)."""
    n = len(txn.events)
    if n == 0 and txn.schema_changes:  # DDL without row changes: one batch-envelope record keeps it in order
        yield from batch_records([txn])
        return
    for i, ev in enumerate(txn.events):
        headers: list[tuple[str, bytes]] = [
            (KIND, CHANGE),
            (TXN, f"{txn.commit_lsn}:{txn.end_lsn}:{txn.xid}:{txn.commit_ts}:{i}:{n}".encode())]
        if i == 0 and txn.relations:
            headers.append((RELATIONS, json.dumps([_relation_json(r) for r in txn.relations]).encode()))
        if i == 0 and txn.schema_changes:
            headers.append((DDL, _changes_text(txn)))
        yield key_bytes(ev), ev.to_json().encode(), headers


def _changes_text(txn: Transaction) -> bytes:
    """A transaction's schema changes as JSON (``null`` when it has none)."""
    if not txn.schema_changes:
        return b"null"
    return _text([c.to_dict() for c in txn.schema_changes])


def _changes_from(data: Any) -> tuple[SchemaChange, ...]:
    return tuple(SchemaChange.from_dict(c) for c in data) if data else ()


def snapshot_record(event: ChangeEvent) -> tuple[bytes, bytes, Headers]:
    return key_bytes(event), event.to_json().encode(), [(KIND, SNAPSHOT)]


def control_record(kind: str, **data: Any) -> tuple[bytes, bytes, Headers]:
    return kind.encode(), json.dumps({"type": kind, **data}).encode(), [(KIND, CONTROL)]


def schema_record(doc: dict[str, Any]) -> tuple[bytes, bytes, Headers]:
    """A schema document (:mod:`pipeline.kafka.schema`) as a control record."""
    key = b"snapshot-schema" if doc.get("reason") == "snapshot" else b"schema"
    return key, json.dumps(doc, separators=(",", ":")).encode(), [(KIND, CONTROL)]


class BadRecord(ValueError):
    """Why a record is not readable (becomes a BadItem)."""


# -- the batch envelope -----------------------------------------------------------------------
def _out(row: Any) -> Any:
    """A row as JSON: itself unless it holds an unchanged-TOAST marker (the common case costs one scan)."""
    if row is None or UNCHANGED_TOAST not in row.values():
        return row
    return _row_to_json(row)


_TEXT_TYPES = frozenset((str, type(None)))


def _in(row: Any) -> Any:
    """A JSON row back: checked value by value only when it holds an object (the TOAST marker) or a non-text."""
    if row is None:
        return None
    if type(row) is not dict:
        raise BadRecord(f"a row is a {type(row).__name__}, not an object")
    if _TEXT_TYPES.issuperset(map(type, row.values())):
        return row
    return _row_from_json(row)


def _event_list(ev: ChangeEvent) -> list[Any]:
    s = ev.source
    return [ev.op.value, s.lsn, s.commit_lsn, s.tx_id, s.ts_ms, s.schema, s.table, s.snapshot,
            _out(ev.before), _out(ev.after), _out(ev.key)]


_OPS = {op.value: op for op in Op}


def _event_from(data: Sequence[Any]) -> ChangeEvent:
    op, lsn, commit, xid, ts, schema, table, snap, before, after, key = data
    return change_event(_OPS[op], _in(before), _in(after), source_info(lsn, commit, xid, ts, schema, table, snap),
                        _in(key) or {})


# The batch envelope is built and read with orjson (installed with Prefect, declared in pyproject): the same
# JSON values as the json module, several times faster on the publisher's and the replica's hot paths.
_dumps = orjson.dumps
_loads = orjson.loads


def _text(value: Any) -> bytes:
    """Compact JSON (UTF-8, not ASCII-escaped), as bytes."""
    return _dumps(value)


class _Packer:
    """Packs JSON event texts into records of at most ``max_events`` changes and ``max_bytes`` of JSON."""

    def __init__(self, head: bytes, kind: bytes, max_events: int, max_bytes: int) -> None:
        self.head, self.headers = head, [(KIND, kind)]
        self.max_events, self.max_bytes = max_events, max_bytes
        self.parts: list[bytes] = []
        self.events = self.bytes = 0

    def fits(self, n: int, size: int) -> bool:
        return self.events + n <= self.max_events and self.bytes + size <= self.max_bytes

    def take(self, texts: Sequence[bytes], start: int) -> int:
        """How many of ``texts[start:]`` go into this record (at least one into an empty record)."""
        end, size = start, 0
        while end < len(texts) and self.events + (end - start) < self.max_events \
                and (self.bytes + size + len(texts[end]) + 1 <= self.max_bytes or (end == start and not self.events)):
            size += len(texts[end]) + 1
            end += 1
        self.events += end - start
        self.bytes += size
        return end

    def emit(self) -> Iterator[tuple[None, bytes, Headers]]:
        if self.parts:
            yield None, self.head + b",".join(self.parts) + b"]}", self.headers
        self.parts, self.events, self.bytes = [], 0, 0


def batch_records(txns: Sequence[Transaction], *, max_events: int = MAX_EVENTS,
                  max_bytes: int = MAX_BYTES) -> Iterator[tuple[None, bytes, Headers]]:
    """Records of the batch envelope for ``txns``: whole transactions per record, at most ``max_events``
    changes and about ``max_bytes`` of JSON each (a transaction larger than that alone spans several records,
    as numbered fragments)."""
    pack = _Packer(f'{{"v":{VERSION},"txns":['.encode(), TXNS, max_events, max_bytes)
    for txn in txns:
        texts = [_text(_event_list(e)) for e in txn.events]
        n = len(texts)
        rels = _text([_relation_json(r) for r in txn.relations]) if txn.relations else b"null"
        ddl = _changes_text(txn)
        if not pack.fits(n, sum(map(len, texts)) + n):
            yield from pack.emit()  # a transaction is cut only when it alone is larger than a record
        start = 0
        while True:
            end = pack.take(texts, start) if n else 0
            if n == 0:  # no row change (a transaction PostgreSQL sent only descriptions for): kept, in order
                pack.parts.append(b"[%d,%d,%d,%d,0,0,%s,[],%s]" % (txn.xid, txn.commit_lsn, txn.end_lsn,
                                                                    txn.commit_ts, rels, ddl))
                break
            if end == start:  # nothing fits in what is left of this record
                yield from pack.emit()
                continue
            pack.parts.append(b"[%d,%d,%d,%d,%d,%d,%s,[%s],%s]" % (
                txn.xid, txn.commit_lsn, txn.end_lsn, txn.commit_ts, start, n, rels if start == 0 else b"null",
                b",".join(texts[start:end]), ddl if start == 0 else b"null"))
            start = end
            if start >= n:
                break
            yield from pack.emit()  # the transaction continues in the next record
    yield from pack.emit()


def rows_records(events: Sequence[ChangeEvent], *, max_events: int = MAX_EVENTS,
                 max_bytes: int = MAX_BYTES) -> Iterator[tuple[None, bytes, Headers]]:
    """Snapshot rows in the batch envelope, at most ``max_events`` and about ``max_bytes`` of JSON per record."""
    pack = _Packer(f'{{"v":{VERSION},"rows":['.encode(), ROWS, max_events, max_bytes)
    texts = [_text(_event_list(e)) for e in events]
    start = 0
    while start < len(texts):
        end = pack.take(texts, start)
        pack.parts.extend(texts[start:end])
        start = end
        yield from pack.emit()


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TxnItem:
    txn: Transaction
    offset: int  # the offset to store with it: its last record's, or one below when that record holds more


@dataclass(frozen=True, slots=True)
class SnapshotItem:
    events: tuple[ChangeEvent, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class ControlItem:
    data: dict[str, Any]
    offset: int


@dataclass(frozen=True, slots=True)
class BadItem:
    """A record this replica cannot read: parked by name (topic, partition, offset), never applied or lost."""

    record: Record
    reason: str

    @property
    def offset(self) -> int:
        return self.record.offset


Item = TxnItem | SnapshotItem | ControlItem | BadItem


def _version(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadRecord("the value is not a JSON object")
    v = doc.get("v", 1)
    if not isinstance(v, int) or v > VERSION:
        raise BadRecord(f"format version {v!r} is newer than this pg2edge reads ({VERSION}): upgrade pg2edge")
    return doc


@dataclass
class Regrouper:
    """Turns records back into whole transactions; drops fragments of a transaction re-sent
    after a publisher crash (the complete copy follows, and the LSN check absorbs duplicates)."""

    _events: list[ChangeEvent] = field(default_factory=list)
    _meta: tuple[int, int, int, int, int] | None = None  # commit, end, xid, ts, count
    _relations: tuple[Relation, ...] = ()
    _changes: tuple[SchemaChange, ...] = ()
    dropped_fragments: int = 0

    def _reset(self) -> None:
        if self._events:
            self.dropped_fragments += 1
        self._events, self._meta, self._relations, self._changes = [], None, (), ()

    def feed(self, record: Record) -> list[Item]:
        """The items ``record`` completes (none while a transaction is still incomplete)."""
        try:
            return self._feed(record)
        except BadRecord as exc:
            return [BadItem(record, str(exc))]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            return [BadItem(record, f"unreadable ({type(exc).__name__}: {exc})")]

    def _feed(self, record: Record) -> list[Item]:
        kind = record.headers.get(KIND)
        if kind is None:
            raise BadRecord("no pg2edge.kind header: not a record of `pg2edge publish`")
        if kind == CONTROL:
            data = _version(json.loads(record.value or b"{}"))
            if data.get("type") not in CONTROLS:
                raise BadRecord(f"unknown control type {data.get('type')!r} (a newer pg2edge?)")
            self._reset()
            return [ControlItem(data, record.offset)]
        if kind == TXNS:
            return self._txns(record)
        if kind == ROWS:
            doc = _version(_loads(record.value or b""))
            self._reset()
            return [SnapshotItem(tuple(_event_from(e) for e in doc["rows"]), record.offset)]
        if kind == SNAPSHOT:
            event = ChangeEvent.from_json(record.value or b"")
            self._reset()
            return [SnapshotItem((event,), record.offset)]
        if kind != CHANGE:
            raise BadRecord(f"unknown pg2edge.kind {kind!r} (a newer pg2edge?)")
        event = ChangeEvent.from_json(record.value or b"")
        commit, end, xid, ts, index, count = (int(x) if x != "None" else 0
                                              for x in record.headers[TXN].decode().split(":"))
        rel = record.headers.get(RELATIONS)
        ddl = record.headers.get(DDL)
        done = self._fragment(commit, end, xid, ts, index, count,
                              tuple(_relation_from(r) for r in json.loads(rel)) if rel else (), [event],
                              _changes_from(json.loads(ddl)) if ddl else ())
        return [TxnItem(done, record.offset)] if done is not None else []

    def _fragment(self, commit: int, end: int, xid: int, ts: int, index: int, count: int,
                  relations: tuple[Relation, ...], events: list[ChangeEvent],
                  changes: tuple[SchemaChange, ...] = ()) -> Transaction | None:
        if index == 0:
            self._reset()
            self._meta = (commit, end, xid, ts, count)
            self._relations = relations
            self._changes = changes
        elif self._meta is None or self._meta[0] != commit or index != len(self._events):
            self._reset()
            return None
        self._events.extend(events)
        if len(self._events) < self._meta[4]:
            return None
        c, e, x, t, _ = self._meta
        txn = Transaction(xid=x, commit_lsn=c, end_lsn=e, commit_ts=t, events=tuple(self._events),
                          relations=self._relations, schema_changes=self._changes)
        self._events, self._meta, self._relations, self._changes = [], None, (), ()
        return txn

    def _txns(self, record: Record) -> list[Item]:
        doc = _version(_loads(record.value or b""))
        done: list[Transaction] = []
        for xid, commit, end, ts, index, count, rels, events, *rest in doc["txns"]:
            txn = self._fragment(int(commit), int(end), int(xid or 0), int(ts), int(index), int(count),
                                 tuple(_relation_from(r) for r in rels) if rels else (),
                                 [_event_from(e) for e in events], _changes_from(rest[0]) if rest else ())
            if txn is not None:
                done.append(txn)
        # A transaction stored with this record's offset would make a restart skip the rest of the record:
        # every one but a last that ends the record keeps the offset below (the LSN check skips re-reads).
        out: list[Item] = []
        for i, txn in enumerate(done):
            whole = i == len(done) - 1 and not self._events
            out.append(TxnItem(txn, record.offset if whole else record.offset - 1))
        return out

    @property
    def pending(self) -> bool:
        return bool(self._events)
