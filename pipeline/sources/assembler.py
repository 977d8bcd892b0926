"""Turn the pgoutput message stream into whole Transactions of ChangeEvents."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from pg2edge.pipeline.errors import ProtocolError
from pg2edge.pipeline.events import ChangeEvent, Op, SchemaChange, SourceInfo, Transaction
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


@dataclass(frozen=True, slots=True)
class _RelMeta:
    rel: pg.Relation
    names: tuple[str, ...]
    key_idx: tuple[int, ...]


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
        if isinstance(msg, pg.Begin):
            self._open = _Open(msg)
            return None
        if isinstance(msg, pg.Relation):
            names = tuple(c.name for c in msg.columns)
            self._rels[msg.relid] = _RelMeta(msg, names, tuple(i for i, c in enumerate(msg.columns) if c.is_key))
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

    def _events(self, msg: pg.Message, lsn: int) -> list[ChangeEvent]:
        if isinstance(msg, pg.Insert):
            m = self._meta(msg.relid)
            after = dict(zip(m.names, msg.new))
            key = {m.names[i]: msg.new[i] for i in m.key_idx}
            return [ChangeEvent(Op.CREATE, None, after, self._source(m.rel, lsn), key)]
        if isinstance(msg, pg.Update):
            m = self._meta(msg.relid)
            after = dict(zip(m.names, msg.new))
            key = {m.names[i]: msg.new[i] for i in m.key_idx}
            before = None
            if msg.old is not None:
                before = (dict(zip(m.names, msg.old)) if msg.old_kind == "O"
                          else {m.names[i]: msg.old[i] for i in m.key_idx})
            return [ChangeEvent(Op.UPDATE, before, after, self._source(m.rel, lsn), key)]
        if isinstance(msg, pg.Delete):
            m = self._meta(msg.relid)
            before = (dict(zip(m.names, msg.old)) if msg.old_kind == "O"
                      else {m.names[i]: msg.old[i] for i in m.key_idx})
            key = {m.names[i]: msg.old[i] for i in m.key_idx}
            return [ChangeEvent(Op.DELETE, before, None, self._source(m.rel, lsn), key)]
        if isinstance(msg, pg.Truncate):
            return [ChangeEvent(Op.TRUNCATE, None, None, self._source(self._meta(r).rel, lsn), {})
                    for r in msg.relids]
        raise ProtocolError(f"unexpected pgoutput message {type(msg).__name__}")
