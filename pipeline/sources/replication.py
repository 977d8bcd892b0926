"""The logical replication connection: slots, START_REPLICATION, frames, acks, reconnects.

Works at the libpq layer of psycopg 3 (a ``replication=database`` connection
speaks the simple query protocol only and takes no bound parameters, so slot
names are validated and quoted here). The stream reports as flushed only the
LSN the caller passed to ``ack()`` — the position its sink has durably
committed — so the slot never advances past unapplied changes.
"""

from __future__ import annotations

import logging
import re
import select
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import pq

from pg2edge.dsn import codec_dsn, connect, control, describe
from pg2edge.errors import PrivilegeError, SourceError
from pg2edge.pipeline.errors import ProtocolError, ReplicationError, SlotTimeoutError
from pg2edge.pipeline.lsn import format_lsn, parse_lsn

__all__ = [
    "ReplicationStream", "SlotSnapshot", "SlotStatus", "slot_status", "SystemIdentity", "XLogData", "create_slot",
    "create_slot_with_snapshot", "drop_slot", "format_lsn", "identify_system", "parse_lsn",
]

log = logging.getLogger(__name__)

_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
_XLOG = struct.Struct("!QQq")
_KEEPALIVE = struct.Struct("!QqB")
_STATUS = struct.Struct("!cQQQqB")
_PG_EPOCH_US = 946_684_800_000_000


def _pg_now_us() -> int:
    return int(time.time() * 1_000_000) - _PG_EPOCH_US


def check_slot_name(slot: str) -> str:
    """Slot names are lower-case letters, digits and underscores (PostgreSQL's own rule)."""
    if not _SLOT_NAME.match(slot):
        raise ReplicationError(
            f"invalid replication slot name {slot!r}: use 1-63 lower-case letters, digits or '_'")
    return slot


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def open_replication_connection(dsn: str) -> psycopg.Connection[Any]:
    """A ``replication=database`` connection (autocommit, simple protocol).

    Opened with the value codec's session settings, so pgoutput's text values
    are in the format the codec reads whatever the server's defaults are.
    """
    return connect(codec_dsn(dsn), autocommit=True, replication="database")


def _run(conn: psycopg.Connection[Any], command: str, *, timeout: float | None = None) -> list[list[str | None]]:
    """Run one replication command with the simple protocol; rows as text; errors by SQLSTATE."""
    pg = conn.pgconn
    pg.send_query(command.encode())
    deadline = None if timeout is None else time.monotonic() + timeout
    while pg.is_busy():
        wait = 1.0 if deadline is None else deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError(command)
        select.select([pg.socket], [], [], min(wait, 1.0))
        pg.consume_input()
    rows: list[list[str | None]] = []
    error = None
    while (res := pg.get_result()) is not None:
        if res.status == pq.ExecStatus.FATAL_ERROR:
            error = res
        elif res.status == pq.ExecStatus.TUPLES_OK:
            for r in range(res.ntuples):
                rows.append([None if (v := res.get_value(r, c)) is None else bytes(v).decode()
                             for c in range(res.nfields)])
    if error is not None:
        state = (error.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        message = (error.error_message or b"").decode(errors="replace").strip()
        try:
            cls = psycopg.errors.lookup(state)
        except KeyError:
            cls = psycopg.DatabaseError
        raise cls(message)
    return rows


@dataclass(frozen=True, slots=True)
class SystemIdentity:
    system_identifier: str
    timeline: int
    xlogpos: int
    database: str


def identify_system(dsn: str) -> SystemIdentity:
    """IDENTIFY_SYSTEM: the cluster's system identifier names the source in the state table."""
    with open_replication_connection(dsn) as conn:
        (row,) = _run(conn, "IDENTIFY_SYSTEM")
    return SystemIdentity(system_identifier=str(row[0]), timeline=int(row[1] or 0),
                          xlogpos=parse_lsn(row[2] or "0/0"), database=str(row[3]))


class SlotSnapshot(NamedTuple):
    """A new slot and the exported snapshot that matches it; keep ``conn`` open and idle."""

    slot: str
    consistent_lsn: int
    snapshot_name: str
    conn: psycopg.Connection[Any]


def _blockers(dsn: str) -> str:
    try:
        with control(dsn) as conn:
            rows = conn.execute(
                "SELECT pid, datname, now() - xact_start FROM pg_stat_activity "
                "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start").fetchall()
    except psycopg.Error:
        return "unknown"
    return ", ".join(f"pid {p} on {d} open for {age}" for p, d, age in rows) or "none visible"


def _create(dsn: str, slot: str, option: str, timeout: float) -> tuple[psycopg.Connection[Any], list[str | None]]:
    check_slot_name(slot)
    conn = open_replication_connection(dsn)
    try:
        (row,) = _run(conn, f"CREATE_REPLICATION_SLOT {_ident(slot)} LOGICAL pgoutput ({option})",
                      timeout=timeout)
    except TimeoutError:
        blockers = _blockers(dsn)
        conn.cancel_safe(timeout=5)
        conn.close()
        drop_slot(dsn, slot, missing_ok=True)
        raise SlotTimeoutError(
            f"creating replication slot {slot!r} at {describe(dsn)} waited {timeout:g}s for open write "
            f"transactions to finish (blocking: {blockers}); retry when they commit") from None
    except psycopg.errors.DuplicateObject:
        conn.close()
        raise ReplicationError(f"replication slot {slot!r} already exists at {describe(dsn)}") from None
    except BaseException:
        conn.close()
        raise
    log.info("created replication slot %s at %s (consistent point %s)", slot, describe(dsn), row[1])
    return conn, row


def create_slot_with_snapshot(dsn: str, slot: str, *, timeout: float = 60.0) -> SlotSnapshot:
    """CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export'); the snapshot lives while ``conn`` is idle.

    Use the snapshot with ``SET TRANSACTION SNAPSHOT '<name>'`` on other connections,
    then close ``conn``. Slot creation waits for running write transactions; after
    ``timeout`` seconds it is cancelled and a ``SlotTimeoutError`` names the blockers.
    """
    conn, row = _create(dsn, slot, "SNAPSHOT 'export'", timeout)
    return SlotSnapshot(slot=slot, consistent_lsn=parse_lsn(row[1] or "0/0"),
                        snapshot_name=str(row[2]), conn=conn)


def create_slot(dsn: str, slot: str, *, timeout: float = 60.0) -> int:
    """Create a pgoutput slot without a snapshot; returns its consistent LSN."""
    conn, row = _create(dsn, slot, "SNAPSHOT 'nothing'", timeout)
    conn.close()
    return parse_lsn(row[1] or "0/0")


def drop_slot(dsn: str, slot: str, *, missing_ok: bool = True, terminate_holder: bool = False) -> bool:
    """Drop a replication slot (waiting for it to become inactive); True if it existed.

    ``terminate_holder``: end the session that holds the slot first (an orphaned snapshot keeper of
    a run that crashed before it recorded the slot)."""
    check_slot_name(slot)
    with control(dsn) as conn:
        if terminate_holder:
            conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
        for _ in range(100):
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                log.info("dropped replication slot %s at %s", slot, describe(dsn))
                return True
            except psycopg.errors.UndefinedObject:
                if missing_ok:
                    return False
                raise ReplicationError(f"replication slot {slot!r} does not exist at {describe(dsn)}") from None
            except psycopg.errors.ObjectInUse:
                time.sleep(0.1)
    raise ReplicationError(f"replication slot {slot!r} at {describe(dsn)} stayed active; not dropped")


@dataclass(frozen=True, slots=True)
class SlotStatus:
    slot: str
    active: bool
    confirmed_flush_lsn: int
    retained_wal_bytes: int  # WAL the server keeps for this slot (from its restart_lsn)


def slot_status(dsn: str, slot: str) -> SlotStatus | None:
    """The slot's acknowledged position and the WAL it pins on the source, or None if absent."""
    with control(dsn) as conn:
        row = conn.execute(
            "SELECT active, confirmed_flush_lsn::text, "
            "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return None
    return SlotStatus(slot=slot, active=bool(row[0]), confirmed_flush_lsn=parse_lsn(row[1] or "0/0"),
                      retained_wal_bytes=int(row[2]))


@dataclass(frozen=True, slots=True)
class XLogData:
    """One 'w' frame: the WAL position of its payload (one pgoutput message)."""

    wal_start: int
    wal_end: int
    send_time: int
    payload: bytes


class ReplicationStream:
    """START_REPLICATION for a pgoutput slot, with keepalive replies, status and reconnects.

    ``read(timeout=)`` returns the next XLogData or None. After a reconnect the
    server resends from the last acknowledged position, so ``generation``
    increments and the consumer must drop any half-received transaction.
    """

    def __init__(self, dsn: str, *, slot: str, publications: Sequence[str], start_lsn: int = 0,
                 status_interval: float = 10.0, reconnect_timeout: float = 60.0,
                 messages: bool = True) -> None:
        self.dsn = dsn
        self.slot = check_slot_name(slot)
        self.publications = tuple(publications)
        self.status_interval = status_interval
        self.reconnect_timeout = reconnect_timeout
        self.messages = messages
        self.flushed_lsn = start_lsn
        self.received_lsn = start_lsn
        self.server_wal_end = 0
        self.generation = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._last_status = 0.0

    # -- connection -------------------------------------------------------
    def _command(self) -> str:
        pubs = ",".join(_ident(p) for p in self.publications)
        opts = f"proto_version '1', publication_names {_literal(pubs)}"
        if self.messages:
            opts += ", messages 'true'"
        return f"START_REPLICATION SLOT {_ident(self.slot)} LOGICAL {format_lsn(self.flushed_lsn)} ({opts})"

    def start(self) -> None:
        conn = open_replication_connection(self.dsn)
        pg = conn.pgconn
        try:
            pg.send_query(self._command().encode())
            res = pg.get_result()
            if res is None or res.status != pq.ExecStatus.COPY_BOTH:
                state = (res.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode() if res else ""
                message = (res.error_message or b"").decode(errors="replace").strip() if res else "no result"
                try:
                    cls = psycopg.errors.lookup(state)
                except KeyError:
                    cls = psycopg.OperationalError
                raise cls(message)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._last_status = time.monotonic()
        log.info("streaming slot %s from %s", self.slot, format_lsn(self.flushed_lsn))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ReplicationStream:
        if self._conn is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reconnect(self, cause: BaseException) -> None:
        self.close()
        log.warning("replication stream of slot %s lost (%s); reconnecting", self.slot, type(cause).__name__)
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.2
        while True:
            try:
                self.start()
                self.generation += 1
                self.received_lsn = self.flushed_lsn
                return
            except (psycopg.OperationalError, psycopg.errors.ObjectInUse, ReplicationError) as exc:
                if time.monotonic() + delay > deadline:
                    raise ReplicationError(
                        f"replication slot {self.slot!r} at {describe(self.dsn)} unreachable for "
                        f"{self.reconnect_timeout:g}s: {type(exc).__name__}") from None
                log.debug("reconnect of slot %s failed (%s); retry in %.1fs", self.slot, type(exc).__name__, delay)
            except PrivilegeError:
                raise
            except SourceError as exc:  # connect() failed: server still down
                if time.monotonic() + delay > deadline:
                    raise ReplicationError(f"cannot reconnect replication slot {self.slot!r}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- status -----------------------------------------------------------
    def ack(self, lsn: int) -> None:
        """Report ``lsn`` as flushed: the sink has durably committed everything up to it."""
        if lsn > self.flushed_lsn:
            self.flushed_lsn = lsn
        self._send_status()

    def _send_status(self, *, reply: bool = False) -> None:
        if self._conn is None:
            return
        written = max(self.received_lsn, self.flushed_lsn)
        msg = _STATUS.pack(b"r", written, self.flushed_lsn, self.flushed_lsn, _pg_now_us(), int(reply))
        pg = self._conn.pgconn
        try:
            pg.put_copy_data(msg)
            pg.flush()
        except psycopg.OperationalError as exc:
            # the connection is gone; the next read() reconnects and restarts from flushed_lsn
            log.warning("status update for slot %s not sent (%s); will reconnect", self.slot, type(exc).__name__)
            return
        self._last_status = time.monotonic()

    # -- reading ----------------------------------------------------------
    def read(self, *, timeout: float) -> XLogData | None:
        """The next XLogData frame, or None after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._conn is None:
                    self.start()
                frame = self._poll(deadline)
            except psycopg.OperationalError as exc:
                self._reconnect(exc)
                continue
            if frame is not _NO_FRAME:
                return frame  # type: ignore[return-value]
            if time.monotonic() >= deadline:
                return None

    def _poll(self, deadline: float) -> XLogData | None | object:
        assert self._conn is not None
        pg = self._conn.pgconn
        while True:
            n, data = pg.get_copy_data(1)
            if n > 0:
                frame = self._frame(bytes(data))
                if frame is not None:
                    return frame
                continue
            if n == -1:
                res = pg.get_result()
                detail = (res.error_message or b"").decode(errors="replace").strip() if res else ""
                raise psycopg.OperationalError(f"replication stream ended: {detail}")
            now = time.monotonic()
            if now - self._last_status >= self.status_interval:
                self._send_status()
            wait = min(deadline - now, self.status_interval - (now - self._last_status))
            if wait <= 0 and now >= deadline:
                return _NO_FRAME
            ready, _, _ = select.select([pg.socket], [], [], max(wait, 0.0))
            if ready:
                pg.consume_input()
            elif time.monotonic() >= deadline:
                return _NO_FRAME

    def _frame(self, data: bytes) -> XLogData | None:
        kind = data[:1]
        if kind == b"w":
            start, end, sent = _XLOG.unpack_from(data, 1)
            if end > self.server_wal_end:
                self.server_wal_end = end
            if start > self.received_lsn:
                self.received_lsn = start
            return _xlogdata(start, end, sent, data[_XLOG.size + 1:])
        if kind == b"k":
            end, _sent, reply = _KEEPALIVE.unpack_from(data, 1)
            self.server_wal_end = max(self.server_wal_end, end)
            if reply:
                self._send_status()
            return None
        raise ProtocolError(f"unknown replication frame type {kind!r} on slot {self.slot!r}")


_NO_FRAME: Any = object()
_new = object.__new__
_XL_START, _XL_END, _XL_SENT, _XL_PAYLOAD = (XLogData.__dict__[f].__set__
                                             for f in ("wal_start", "wal_end", "send_time", "payload"))


def _xlogdata(start: int, end: int, sent: int, payload: bytes) -> XLogData:
    """``XLogData(...)`` built without the frozen __init__ (one per change: the same object, cheaper)."""
    x = _new(XLogData)
    _XL_START(x, start)
    _XL_END(x, end)
    _XL_SENT(x, sent)
    _XL_PAYLOAD(x, payload)
    return x
