"""Kafka records of the change stream, and regrouping them into whole source transactions.

Every record's value is one ``ChangeEvent`` JSON envelope (other consumers need
nothing else); its key is the JSON of the primary-key columns. Headers:

* ``pg2edge.kind``: ``change`` (CDC), ``snapshot`` (an ``op: "r"`` row of the
  initial snapshot) or ``control`` (value is a JSON control message instead).
* ``pg2edge.txn`` on changes: ``commit_lsn:end_lsn:xid:commit_ts_ms:index:count``;
  a consumer applies a transaction only once all ``count`` events are there.
* ``pg2edge.relations`` on a transaction's first event when PostgreSQL sent
  table descriptions (schema drift detection on the replica).

Controls: ``snapshot-begin`` {slot, publication, database, system_identifier,
snapshot_lsn, tables} (a replica empties its tables), ``snapshot-end``
{snapshot_lsn} (the replica's position becomes the snapshot LSN) and
``heartbeat`` {lsn} (everything below ``lsn`` is published: the watermark).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pg2edge.pipeline.events import ChangeEvent, Transaction
from pg2edge.pipeline.kafka.client import Headers, Record
from pg2edge.pipeline.sources.pgoutput import Column, Relation, ReplicaIdentity

KIND, TXN, RELATIONS = "pg2edge.kind", "pg2edge.txn", "pg2edge.relations"


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


def transaction_records(txn: Transaction) -> Iterator[tuple[bytes, bytes, Headers]]:
    """(key, value, headers) of each event of ``txn``, in order."""
    n = len(txn.events)
    for i, ev in enumerate(txn.events):
        headers: list[tuple[str, bytes]] = [
            (KIND, b"change"),
            (TXN, f"{txn.commit_lsn}:{txn.end_lsn}:{txn.xid}:{txn.commit_ts}:{i}:{n}".encode())]
        if i == 0 and txn.relations:
            headers.append((RELATIONS, json.dumps([_relation_json(r) for r in txn.relations]).encode()))
        yield key_bytes(ev), ev.to_json().encode(), headers


def snapshot_record(event: ChangeEvent) -> tuple[bytes, bytes, Headers]:
    return key_bytes(event), event.to_json().encode(), [(KIND, b"snapshot")]


def control_record(kind: str, **data: Any) -> tuple[bytes, bytes, Headers]:
    return kind.encode(), json.dumps({"type": kind, **data}).encode(), [(KIND, b"control")]


@dataclass(frozen=True, slots=True)
class TxnItem:
    txn: Transaction
    offset: int  # offset of its last record


@dataclass(frozen=True, slots=True)
class SnapshotItem:
    event: ChangeEvent
    offset: int


@dataclass(frozen=True, slots=True)
class ControlItem:
    data: dict[str, Any]
    offset: int


Item = TxnItem | SnapshotItem | ControlItem


@dataclass
class Regrouper:
    """Turns records back into whole transactions; drops fragments of a transaction re-sent
    after a publisher crash (the complete copy follows, and the LSN check absorbs duplicates)."""

    _events: list[ChangeEvent] = field(default_factory=list)
    _meta: tuple[int, int, int, int, int] | None = None  # commit, end, xid, ts, count
    _relations: tuple[Relation, ...] = ()
    dropped_fragments: int = 0

    def _reset(self) -> None:
        if self._events:
            self.dropped_fragments += 1
        self._events, self._meta, self._relations = [], None, ()

    def feed(self, record: Record) -> Item | None:
        kind = record.headers.get(KIND, b"change")
        if kind == b"control":
            self._reset()
            return ControlItem(json.loads(record.value or b"{}"), record.offset)
        event = ChangeEvent.from_json(record.value or b"")
        if kind == b"snapshot":
            self._reset()
            return SnapshotItem(event, record.offset)
        commit, end, xid, ts, index, count = (int(x) if x != "None" else 0
                                              for x in record.headers[TXN].decode().split(":"))
        if index == 0:
            self._reset()
            self._meta = (commit, end, xid, ts, count)
            rel = record.headers.get(RELATIONS)
            self._relations = tuple(_relation_from(r) for r in json.loads(rel)) if rel else ()
        elif self._meta is None or self._meta[0] != commit or index != len(self._events):
            self._reset()
            return None
        self._events.append(event)
        if len(self._events) < self._meta[4]:
            return None
        c, e, x, t, _ = self._meta
        txn = Transaction(xid=x, commit_lsn=c, end_lsn=e, commit_ts=t, events=tuple(self._events),
                          relations=self._relations)
        self._events, self._meta, self._relations = [], None, ()
        return TxnItem(txn, record.offset)

    @property
    def pending(self) -> bool:
        return bool(self._events)
