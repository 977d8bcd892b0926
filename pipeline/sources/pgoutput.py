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
from typing import Final, cast

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

    def tuple_data(self) -> tuple[Value, ...]:
        (ncols,) = self.take(_I16)
        buf = self.buf
        out: list[Value] = []
        for _ in range(ncols):
            kind = buf[self.pos]
            self.pos += 1
            if kind == 0x74:  # 't'
                (length,) = _I32.unpack_from(buf, self.pos)
                start = self.pos + 4
                self.pos = start + length
                out.append(buf[start:self.pos].decode("utf-8"))
            elif kind == 0x6E:  # 'n'
                out.append(None)
            elif kind == 0x75:  # 'u'
                out.append(UNCHANGED_TOAST)
            else:
                raise ProtocolError(
                    f"unsupported tuple column kind {chr(kind)!r} (binary mode is not used by pg2edge)")
        return tuple(out)


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


def _insert(r: _Reader) -> Insert:
    (relid,) = r.take(_U32)
    if r.byte() != "N":
        raise ProtocolError(f"Insert for relation {relid} lacks the new tuple marker 'N'")
    return Insert(relid=relid, new=r.tuple_data())


def _update(r: _Reader) -> Update:
    (relid,) = r.take(_U32)
    marker = r.byte()
    old_kind: str | None = None
    old: tuple[Value, ...] | None = None
    if marker in ("K", "O"):
        old_kind, old = marker, r.tuple_data()
        marker = r.byte()
    if marker != "N":
        raise ProtocolError(f"Update for relation {relid} has marker {marker!r}, expected 'N'")
    return Update(relid=relid, old_kind=old_kind, old=old, new=r.tuple_data())


def _delete(r: _Reader) -> Delete:
    (relid,) = r.take(_U32)
    kind = r.byte()
    if kind not in ("K", "O"):
        raise ProtocolError(f"Delete for relation {relid} has marker {kind!r}, expected 'K' or 'O'")
    return Delete(relid=relid, old_kind=kind, old=r.tuple_data())


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


_DECODERS = {
    ord("B"): _begin, ord("C"): _commit, ord("O"): _origin, ord("R"): _relation,
    ord("Y"): _type, ord("I"): _insert, ord("U"): _update, ord("D"): _delete,
    ord("T"): _truncate, ord("M"): _message,
}


def decode(payload: bytes) -> Message:
    """Decode one pgoutput message (the payload of an XLogData frame)."""
    if not payload:
        raise ProtocolError("empty pgoutput message")
    decoder = _DECODERS.get(payload[0])
    if decoder is None:
        raise ProtocolError(f"unknown pgoutput message type {chr(payload[0])!r} "
                            "(pg2edge speaks protocol version 1 without streaming)")
    try:
        return cast(Message, decoder(_Reader(payload)))  # _DECODERS mixes return types: mypy joins them to object
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed pgoutput {chr(payload[0])!r} message: {exc}") from None
