"""Turn the pgoutput message stream into whole Transactions of ChangeEvents."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pg2edge.pipeline.errors import ProtocolError
from pg2edge.pipeline.events import ChangeEvent, Op, SchemaChange, SourceInfo, Transaction, change_event, source_info
from pg2edge.pipeline.sources import pgoutput as pg

log = logging.getLogger(__name__)

SCHEMA_PREFIX = "pg2edge"  # transactional messages of the DDL capture (pipeline/ddl_capture.py)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A non-transactional logical message (pg_logical_emit_message(false, ...)) at ``lsn``."""

    lsn: int
    prefix: str
    content: bytes


@dataclass(slots=True)
class _Open:
    begin: pg.Begin
    events: list[ChangeEvent] = field(default_factory=list)
    relations: list[pg.Relation] = field(default_factory=list)
    schema_changes: list[SchemaChange] = field(default_factory=list)
    # the begin's fields every event of the transaction carries, looked up once
    final_lsn: int = 0
    xid: int = 0
    ts_ms: int = 0


KeyOf = Callable[[Sequence[pg.Value]], dict[str, pg.Value]]


def _key_of(names: tuple[str, ...], key_idx: tuple[int, ...]) -> KeyOf:
    """The function that picks the key columns out of a tuple, as {name: value} (one key column: no loop)."""
    if len(key_idx) == 1:
        (i,), name = key_idx, names[key_idx[0]]
        return lambda values: {name: values[i]}
    pairs = tuple((names[i], i) for i in key_idx)
    return lambda values: {n: values[i] for n, i in pairs}


@dataclass(frozen=True, slots=True)
class _RelMeta:
    """What each change of a relation needs, computed once at its Relation message."""

    rel: pg.Relation
    names: tuple[str, ...]
    key_idx: tuple[int, ...]
    key_of: KeyOf

    @classmethod
    def of(cls, rel: pg.Relation) -> _RelMeta:
        names = tuple(c.name for c in rel.columns)
        key_idx = tuple(i for i, c in enumerate(rel.columns) if c.is_key)
        return cls(rel, names, key_idx, _key_of(names, key_idx))


class Assembler:
    """Feed decoded messages in stream order; ``feed`` returns a Transaction at each Commit.

    Keeps the relation cache (relid -> Relation) across transactions. ``reset()``
    drops a half-received transaction (after a reconnect the server resends it).
    """

    def __init__(self, *, capture: str | None = None) -> None:
        self._rels: dict[int, _RelMeta] = {}
        self._open: _Open | None = None
        self.capture = capture  # schema-change messages of other replicas' triggers are ignored

    def relation(self, relid: int) -> pg.Relation:
        meta = self._rels.get(relid)
        if meta is None:
            raise ProtocolError(f"change for relation id {relid} before its Relation message")
        return meta.rel

    @property
    def open_transaction(self) -> bool:
        """True while a transaction has begun and not yet committed."""
        return self._open is not None

    def reset(self) -> None:
        if self._open is not None:
            log.debug("dropping partial transaction %s", self._open.begin.xid)
        self._open = None

    def feed(self, msg: pg.Message, *, lsn: int = 0) -> Transaction | Heartbeat | None:
        kind = type(msg)
        if kind is pg.Insert or kind is pg.Update or kind is pg.Delete:  # the hot path: one change
            op = self._open
            if op is None:
                raise ProtocolError(f"{kind.__name__} outside a transaction")
            op.events.append(self._row_event(msg, lsn, op))  # type: ignore[arg-type]
            return None
        if isinstance(msg, pg.Begin):
            self._open = _Open(msg, final_lsn=msg.final_lsn, xid=msg.xid, ts_ms=pg.pg_ts_to_ms(msg.commit_ts))
            return None
        if isinstance(msg, pg.Relation):
            self._rels[msg.relid] = _RelMeta.of(msg)
            if self._open is not None:
                self._open.relations.append(msg)
            return None
        if isinstance(msg, pg.Commit):
            return self._commit(msg)
        if isinstance(msg, pg.LogicalMessage):
            if not msg.transactional:
                return Heartbeat(lsn=msg.lsn, prefix=msg.prefix, content=msg.content)
            if msg.prefix == SCHEMA_PREFIX and self._open is not None:
                self._schema_change(msg)
            return None
        if isinstance(msg, (pg.Type, pg.Origin)):
            return None
        if self._open is None:
            raise ProtocolError(f"{type(msg).__name__} outside a transaction")
        self._open.events.extend(self._events(msg, lsn))
        return None

    def _commit(self, msg: pg.Commit) -> Transaction:
        if self._open is None:
            raise ProtocolError(f"Commit at {msg.commit_lsn} without Begin")
        op, self._open = self._open, None
        return Transaction(xid=op.begin.xid, commit_lsn=msg.commit_lsn, end_lsn=msg.end_lsn,
                           commit_ts=pg.pg_ts_to_ms(msg.commit_ts), events=tuple(op.events),
                           relations=tuple(op.relations), schema_changes=tuple(op.schema_changes))

    def _schema_change(self, msg: pg.LogicalMessage) -> None:
        assert self._open is not None
        try:
            data = json.loads(msg.content)
        except ValueError as exc:
            data = {"tag": "?", "statement": "", "error": f"unreadable schema-change message: {exc}"}
        if self.capture is not None and data.get("capture") not in (None, self.capture):
            return
        # PostgreSQL queues a transactional message at the END of its WAL record, which is where the next
        # record starts; the trigger emits it inside a subtransaction (its EXCEPTION block), and the merge of
        # a transaction's subtransactions at decoding may then deliver that next row change first (equal
        # LSNs). A row change at exactly the message's LSN comes after it in the WAL: place the change before.
        events = self._open.events
        index = len(events)
        while index > 0 and events[index - 1].source.lsn == msg.lsn:
            index -= 1
        self._open.schema_changes.append(SchemaChange.from_dict({**data, "lsn": msg.lsn, "index": index}))

    def _source(self, rel: pg.Relation, lsn: int) -> SourceInfo:
        assert self._open is not None
        b = self._open.begin
        return SourceInfo(lsn=lsn or b.final_lsn, commit_lsn=b.final_lsn, tx_id=b.xid,
                          ts_ms=pg.pg_ts_to_ms(b.commit_ts), schema=rel.schema, table=rel.name)

    def _meta(self, relid: int) -> _RelMeta:
        meta = self._rels.get(relid)
        if meta is None:
            raise ProtocolError(f"change for relation id {relid} before its Relation message")
        return meta

    def _row_event(self, msg: pg.Insert | pg.Update | pg.Delete, lsn: int, op: _Open) -> ChangeEvent:
        m = self._rels.get(msg.relid)
        if m is None:
            raise ProtocolError(f"change for relation id {msg.relid} before its Relation message")
        rel = m.rel
        src = source_info(lsn or op.final_lsn, op.final_lsn, op.xid, op.ts_ms, rel.schema, rel.name)
        if type(msg) is pg.Insert:
            new = msg.new
            return change_event(Op.CREATE, None, dict(zip(m.names, new)), src, m.key_of(new))
        if type(msg) is pg.Update:
            new = msg.new
            old = msg.old
            before = None
            if old is not None:
                before = dict(zip(m.names, old)) if msg.old_kind == "O" else m.key_of(old)
            return change_event(Op.UPDATE, before, dict(zip(m.names, new)), src, m.key_of(new))
        assert isinstance(msg, pg.Delete)
        old = msg.old
        before = dict(zip(m.names, old)) if msg.old_kind == "O" else m.key_of(old)
        return change_event(Op.DELETE, before, None, src, m.key_of(old))

    def _events(self, msg: pg.Message, lsn: int) -> list[ChangeEvent]:
        if isinstance(msg, pg.Truncate):
            return [ChangeEvent(Op.TRUNCATE, None, None, self._source(self._meta(r).rel, lsn), {})
                    for r in msg.relids]
        raise ProtocolError(f"unexpected pgoutput message {type(msg).__name__}")
