"""A pure decoder of the pgoutput logical replication protocol, version 1.

``decode(payload)`` turns the payload of one XLogData frame into one typed,
frozen message. Tuple columns are ``str`` (text), ``None`` (SQL NULL) or the
``UNCHANGED_TOAST`` sentinel (kind 'u': the value was not sent because it is
an unchanged TOASTed value; it is never the same as NULL).

Timestamps are microseconds since 2000-01-01 UTC, as on the wire; use
``pg_ts_to_ms`` for Unix milliseconds.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Final, cast

from pg2edge.pipeline.errors import ProtocolError

PG_EPOCH_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z in Unix milliseconds


class _UnchangedToast(enum.Enum):
    """Marker type for an unchanged TOAST column (kind 'u')."""

    UNCHANGED_TOAST = "unchanged-toast"

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = _UnchangedToast.UNCHANGED_TOAST
"""The value of a column that pgoutput did not send because it is unchanged TOAST."""

Value = str | None | _UnchangedToast


def pg_ts_to_ms(pg_us: int) -> int:
    """PostgreSQL timestamp (microseconds since 2000-01-01) -> Unix milliseconds."""
    return PG_EPOCH_MS + pg_us // 1000


class ReplicaIdentity(str, enum.Enum):
    """pg_class.relreplident as sent in a Relation message."""

    DEFAULT = "d"
    NOTHING = "n"
    FULL = "f"
    INDEX = "i"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_ts: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    schema: str
    name: str
    replica_identity: ReplicaIdentity
    columns: tuple[Column, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_key)


@dataclass(frozen=True, slots=True)
class Type:
    oid: int
    schema: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    relid: int
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """An update; ``old`` is set with ``old_kind`` 'K' (key changed) or 'O' (identity FULL)."""

    relid: int
    old_kind: str | None
    old: tuple[Value, ...] | None
    new: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    """A delete; ``old_kind`` is 'K' (key columns only, others None) or 'O' (whole row)."""

    relid: int
    old_kind: str
    old: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    cascade: bool
    restart_identity: bool
    relids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A pg_logical_emit_message() message; non-transactional ones serve as heartbeats."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | LogicalMessage

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_OIDMOD = struct.Struct("!Ii")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 1

    def take(self, st: struct.Struct) -> tuple[int, ...]:
        vals = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return vals

    def byte(self) -> str:
        if self.pos >= len(self.buf):
            raise ProtocolError("pgoutput message truncated")
        ch = chr(self.buf[self.pos])
        self.pos += 1
        return ch

    def cstring(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError("pgoutput string not NUL-terminated")
        text = self.buf[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return text


_unpack_i32 = _I32.unpack_from


def _tuple(buf: bytes, pos: int) -> tuple[tuple[Value, ...], int]:
    """TupleData at ``pos``: (the column values, the position after it). The hot loop of CDC: locals only."""
    ncols = (buf[pos] << 8) | buf[pos + 1]  # Int16, never negative
    pos += 2
    out: list[Value] = []
    append = out.append
    for _ in range(ncols):
        kind = buf[pos]
        if kind == 0x74:  # 't'
            end = pos + 5 + _unpack_i32(buf, pos + 1)[0]
            append(buf[pos + 5:end].decode("utf-8"))
            pos = end
        elif kind == 0x6E:  # 'n'
            append(None)
            pos += 1
        elif kind == 0x75:  # 'u'
            append(UNCHANGED_TOAST)
            pos += 1
        else:
            raise ProtocolError(
                f"unsupported tuple column kind {chr(kind)!r} (binary mode is not used by pg2edge)")
    if pos > len(buf):
        raise IndexError("tuple data truncated")  # decode() names the message
    return tuple(out), pos


# Row messages are built without the frozen dataclass __init__ (object.__setattr__ per field): the same
# frozen objects, several times cheaper to make. The slot descriptors set the fields once.
_new = object.__new__


def _setter(cls: type, name: str) -> Any:
    return cls.__dict__[name].__set__


def _begin(r: _Reader) -> Begin:
    final_lsn, ts, xid = r.take(_BEGIN)
    return Begin(final_lsn=final_lsn, commit_ts=ts, xid=xid)


def _commit(r: _Reader) -> Commit:
    flags, lsn, end, ts = r.take(_COMMIT)
    return Commit(flags=flags, commit_lsn=lsn, end_lsn=end, commit_ts=ts)


def _origin(r: _Reader) -> Origin:
    (lsn,) = r.take(_U64)
    return Origin(commit_lsn=lsn, name=r.cstring())


def _relation(r: _Reader) -> Relation:
    (relid,) = r.take(_U32)
    schema = r.cstring()
    name = r.cstring()
    ident = ReplicaIdentity(r.byte())
    (ncols,) = r.take(_I16)
    cols = []
    for _ in range(ncols):
        flags = ord(r.byte())
        col = r.cstring()
        oid, typmod = r.take(_OIDMOD)
        cols.append(Column(name=col, type_oid=oid, type_modifier=typmod, is_key=bool(flags & 1)))
    return Relation(relid=relid, schema=schema, name=name, replica_identity=ident, columns=tuple(cols))


def _type(r: _Reader) -> Type:
    (oid,) = r.take(_U32)
    return Type(oid=oid, schema=r.cstring(), name=r.cstring())


_INS_RELID, _INS_NEW = _setter(Insert, "relid"), _setter(Insert, "new")
_UPD_RELID, _UPD_OLD_KIND, _UPD_OLD, _UPD_NEW = (_setter(Update, f) for f in ("relid", "old_kind", "old", "new"))
_DEL_RELID, _DEL_OLD_KIND, _DEL_OLD = (_setter(Delete, f) for f in ("relid", "old_kind", "old"))
_unpack_u32 = _U32.unpack_from


def _insert(buf: bytes) -> Insert:
    (relid,) = _unpack_u32(buf, 1)
    if buf[5] != 0x4E:  # 'N'
        raise ProtocolError(f"Insert for relation {relid} lacks the new tuple marker 'N'")
    new, _ = _tuple(buf, 6)
    msg = _new(Insert)
    _INS_RELID(msg, relid)
    _INS_NEW(msg, new)
    return msg


def _update(buf: bytes) -> Update:
    (relid,) = _unpack_u32(buf, 1)
    marker = buf[5]
    pos = 6
    old_kind: str | None = None
    old: tuple[Value, ...] | None = None
    if marker in (0x4B, 0x4F):  # 'K', 'O'
        old_kind = chr(marker)
        old, pos = _tuple(buf, pos)
        marker = buf[pos]
        pos += 1
    if marker != 0x4E:
        raise ProtocolError(f"Update for relation {relid} has marker {chr(marker)!r}, expected 'N'")
    new, _ = _tuple(buf, pos)
    msg = _new(Update)
    _UPD_RELID(msg, relid)
    _UPD_OLD_KIND(msg, old_kind)
    _UPD_OLD(msg, old)
    _UPD_NEW(msg, new)
    return msg


def _delete(buf: bytes) -> Delete:
    (relid,) = _unpack_u32(buf, 1)
    kind = buf[5]
    if kind not in (0x4B, 0x4F):
        raise ProtocolError(f"Delete for relation {relid} has marker {chr(kind)!r}, expected 'K' or 'O'")
    old, _ = _tuple(buf, 6)
    msg = _new(Delete)
    _DEL_RELID(msg, relid)
    _DEL_OLD_KIND(msg, chr(kind))
    _DEL_OLD(msg, old)
    return msg


def _truncate(r: _Reader) -> Truncate:
    (nrels,) = r.take(_I32)
    opts = ord(r.byte())
    relids = struct.unpack_from(f"!{nrels}I", r.buf, r.pos)
    return Truncate(cascade=bool(opts & 1), restart_identity=bool(opts & 2), relids=tuple(relids))


def _message(r: _Reader) -> LogicalMessage:
    flags = ord(r.byte())
    (lsn,) = r.take(_U64)
    prefix = r.cstring()
    (length,) = r.take(_I32)
    content = bytes(r.buf[r.pos:r.pos + length])
    return LogicalMessage(transactional=bool(flags & 1), lsn=lsn, prefix=prefix, content=content)


_DECODERS: dict[int, Any] = {
    ord("B"): _begin, ord("C"): _commit, ord("O"): _origin, ord("R"): _relation,
    ord("Y"): _type, ord("T"): _truncate, ord("M"): _message,
}
_ROWS: dict[int, Any] = {ord("I"): _insert, ord("U"): _update, ord("D"): _delete}  # take the buffer itself


def decode(payload: bytes) -> Message:
    """Decode one pgoutput message (the payload of an XLogData frame)."""
    if not payload:
        raise ProtocolError("empty pgoutput message")
    kind = payload[0]
    try:
        row = _ROWS.get(kind)
        if row is not None:
            return cast(Message, row(payload))
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise ProtocolError(f"unknown pgoutput message type {chr(kind)!r} "
                                "(pg2edge speaks protocol version 1 without streaming)")
        return cast(Message, decoder(_Reader(payload)))  # _DECODERS mixes return types: mypy joins them to object
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed pgoutput {chr(kind)!r} message: {exc}") from None
