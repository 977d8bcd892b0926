"""Retry queue and dead-letter queue for changes the replica cannot apply.

Everything lives in one table inside the replica, ``_pg2edge_queue``, so a
parked change is committed in the same SQLite transaction as the batch and
position that skipped it (exactly once). ``status`` is:

* ``retry``   – the change failed; retried at ``next_attempt_at`` (exponential back-off);
* ``waiting`` – a later change to a key that has an earlier change queued (per-key order);
* ``dead``    – failed ``max_attempts`` times: the dead-letter queue (``pg2edge dlq``).

A key with any queued change is *blocked*: later changes to it queue behind it,
other keys keep flowing. Permanent errors (constraint, type, missing row) park
the change; transient ones (SQLITE_BUSY/LOCKED, I/O) retry the whole batch in
place with back-off and never reorder. A failing batch is rolled back and
re-applied with one savepoint per event so only the failing event is parked.
A TRUNCATE drops the queued changes of its table (they no longer matter).
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from pg2edge.errors import TargetError
from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.events import ChangeEvent, Op
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

QUEUE_TABLE = "_pg2edge_queue"
_Q = quote_ident(QUEUE_TABLE)
DDL = (f"CREATE TABLE IF NOT EXISTS {_Q} (id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT NOT NULL, "
       "source_table TEXT NOT NULL, keys TEXT NOT NULL, commit_lsn INTEGER NOT NULL, event TEXT NOT NULL, "
       "error TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, created_at REAL NOT NULL, "
       "updated_at REAL NOT NULL)")

TRANSIENT = (apsw.BusyError, apsw.LockedError, apsw.IOError, apsw.FullError)


class QueueError(TargetError):
    """A queued change does not exist, or a replay failed again (names the id and the error)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 1.0  # seconds before the 2nd attempt; doubles each time
    max_delay: float = 300.0
    transient_delay: float = 0.05  # first back-off of an in-place retry of a busy/locked batch
    transient_max_delay: float = 5.0

    def delay(self, attempts: int) -> float:
        return min(self.base_delay * 2 ** max(attempts - 1, 0), self.max_delay)


class QueueStatus(str, enum.Enum):
    RETRY = "retry"  # failed; retried at next_attempt_at (exponential back-off)
    WAITING = "waiting"  # behind an earlier queued change to the same key (per-key order)
    DEAD = "dead"  # failed max_attempts times: the dead-letter queue


@dataclass(frozen=True, slots=True)
class QueuedChange:
    id: int
    status: QueueStatus
    table: str
    keys: list[str]
    commit_lsn: int
    event: dict[str, Any]
    error: str | None
    attempts: int
    next_attempt_at: float | None
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status.value, "table": self.table, "keys": self.keys,
                "commit_lsn": self.commit_lsn, "op": self.event.get("op"), "error": self.error,
                "attempts": self.attempts, "next_attempt_at": self.next_attempt_at, "created_at": self.created_at,
                "event": self.event}


def ensure_queue_table(conn: apsw.Connection) -> None:
    conn.execute(DDL)


def _key_string(table: str, key: Mapping[str, Any]) -> str:
    return table + ":" + json.dumps(dict(key), sort_keys=True, separators=(",", ":"), default=str)


def event_keys(ev: ChangeEvent) -> set[str]:
    """The row keys a change touches: its key, and the old key when an UPDATE changed it."""
    table = f"{ev.source.schema}.{ev.source.table}"
    keys = {_key_string(table, ev.key)}
    if ev.before is not None and ev.key:
        old = {c: ev.before.get(c) for c in ev.key if c in ev.before}
        if len(old) == len(ev.key):
            keys.add(_key_string(table, old))
    return keys


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) or isinstance(exc.__cause__, TRANSIENT)


def _row(r: Sequence[Any]) -> QueuedChange:
    return QueuedChange(id=r[0], status=QueueStatus(r[1]), table=r[2], keys=json.loads(r[3]), commit_lsn=r[4],
                        event=json.loads(r[5]), error=r[6], attempts=r[7], next_attempt_at=r[8], created_at=r[9])


_COLS = "id, status, source_table, keys, commit_lsn, event, error, attempts, next_attempt_at, created_at"


def list_queue(conn: apsw.Connection, *, statuses: Iterable[str] = ("retry", "waiting", "dead")) -> list[QueuedChange]:
    statuses = list(statuses)
    try:
        rows = conn.execute(f"SELECT {_COLS} FROM {_Q} WHERE status IN ({', '.join('?' * len(statuses))}) "
                            "ORDER BY id", statuses).fetchall()
    except apsw.SQLError:
        return []  # no queue table: nothing was ever parked
    return [_row(r) for r in rows]


def counts(conn: apsw.Connection) -> dict[str, int]:
    try:
        return {s: n for s, n in conn.execute(f"SELECT status, count(*) FROM {_Q} GROUP BY status")}
    except apsw.SQLError:
        return {}


class RetryQueue:
    """The retry queue and DLQ of one replica, composed into its sink (:class:`~.sqlite.SqliteSink`).

    ``route(ev, apply_event)`` applies a change, or parks it when its key is blocked (``waiting``) or,
    in careful mode, when it fails permanently (``retry``, then ``dead``); ``drain(apply_event)``
    retries the due changes key by key.
    """

    def __init__(self, conn: apsw.Connection, *, policy: RetryPolicy | None = None) -> None:
        self.conn = conn
        ensure_queue_table(conn)
        self.policy = policy or RetryPolicy()
        self.careful = False
        self._blocked: set[str] = set()
        self.parked = 0

    def load_blocked(self) -> None:
        self._blocked = set()
        for (keys,) in self.conn.execute(f"SELECT keys FROM {_Q}"):
            self._blocked.update(json.loads(keys))

    def route(self, ev: ChangeEvent, apply_event: Callable[[ChangeEvent], None]) -> None:
        if ev.op is Op.TRUNCATE:
            table = f"{ev.source.schema}.{ev.source.table}"
            if self._blocked:
                self.conn.execute(f"DELETE FROM {_Q} WHERE source_table = ?", (table,))
                self._blocked = {k for k in self._blocked if not k.startswith(table + ":")}
            apply_event(ev)
            return
        if not self._blocked and not self.careful:
            apply_event(ev)
            return
        keys = event_keys(ev)
        if not self._blocked.isdisjoint(keys):
            self._park(ev, keys, status=QueueStatus.WAITING, error=None, attempts=0)
            return
        if not self.careful:
            apply_event(ev)
            return
        failed = self._attempt(ev, apply_event)
        if failed is not None:
            self._park(ev, keys, status=QueueStatus.RETRY, error=str(failed), attempts=1)

    def _attempt(self, ev: ChangeEvent, apply_event: Callable[[ChangeEvent], None]) -> ApplyError | None:
        """Apply one change inside a savepoint; the permanent error it failed with (rolled back), or None.
        A transient error is raised (the caller retries the whole batch in place)."""
        self.conn.execute("SAVEPOINT pg2edge_change")
        try:
            apply_event(ev)
        except ApplyError as exc:
            self.conn.execute("ROLLBACK TO pg2edge_change")
            self.conn.execute("RELEASE pg2edge_change")
            if is_transient(exc):
                raise
            return exc
        self.conn.execute("RELEASE pg2edge_change")
        return None

    def _park(self, ev: ChangeEvent, keys: set[str], *, status: QueueStatus, error: str | None,
              attempts: int) -> None:
        now = time.time()
        nxt = now + self.policy.delay(attempts) if status is QueueStatus.RETRY else None
        if status is QueueStatus.RETRY and attempts >= self.policy.max_attempts:
            status = QueueStatus.DEAD
        self.conn.execute(
            f"INSERT INTO {_Q} (status, source_table, keys, commit_lsn, event, error, attempts, next_attempt_at, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (status.value, f"{ev.source.schema}.{ev.source.table}", json.dumps(sorted(keys)), ev.source.commit_lsn,
             ev.to_json(), error, attempts, nxt, now, now))
        self._blocked.update(keys)
        self.parked += 1
        if error:
            log.warning("parked change to %s (%s): %s", ", ".join(sorted(keys)), status.value, error)

    def next_due(self) -> float | None:
        row = self.conn.execute(f"SELECT min(next_attempt_at) FROM {_Q} WHERE status = 'retry'").fetchone()
        return row[0] if row else None

    def drain(self, apply_event: Callable[[ChangeEvent], None], *, now: float | None = None,
              force_ids: Iterable[int] = ()) -> tuple[int, int]:
        """Retry due queued changes in id order, key by key; returns (applied, still queued).

        ``force_ids``: dead or not-yet-due changes to try now (``dlq replay``); one that fails
        again goes straight back to the DLQ. The caller rolls back its own caches on an exception.
        """
        now = time.time() if now is None else now
        forced = set(force_ids)
        applied = 0
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            blocked: set[str] = set()
            entries = [_row(r) for r in self.conn.execute(f"SELECT {_COLS} FROM {_Q} ORDER BY id").fetchall()]
            for e in entries:
                keys = set(e.keys)
                due = e.id in forced or (e.status is QueueStatus.RETRY and (e.next_attempt_at or 0) <= now) or (
                    e.status is QueueStatus.WAITING)
                if not blocked.isdisjoint(keys) or not due:
                    blocked |= keys
                    continue
                exc = self._attempt(ChangeEvent.from_dict(e.event), apply_event)
                if exc is not None:
                    attempts = e.attempts + 1
                    dead = e.id in forced or attempts >= self.policy.max_attempts
                    self.conn.execute(
                        f"UPDATE {_Q} SET status = ?, error = ?, attempts = ?, next_attempt_at = ?, updated_at = ? "
                        "WHERE id = ?", (QueueStatus.DEAD.value if dead else QueueStatus.RETRY.value, str(exc),
                                         attempts, None if dead else now + self.policy.delay(attempts), now, e.id))
                    log.warning("queued change %d (%s) failed again (attempt %d%s): %s", e.id, ", ".join(e.keys),
                                attempts, ", now in the DLQ" if dead else "", exc)
                    blocked |= keys
                    continue
                self.conn.execute(f"DELETE FROM {_Q} WHERE id = ?", (e.id,))
                applied += 1
            row = self.conn.execute(f"SELECT count(*) FROM {_Q}").fetchone()
            left = int(row[0]) if row else 0
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return applied, left


# -- operator actions (pg2edge dlq) ------------------------------------------------------
def get_change(conn: apsw.Connection, change_id: int) -> QueuedChange:
    try:
        row = conn.execute(f"SELECT {_COLS} FROM {_Q} WHERE id = ?", (change_id,)).fetchone()
    except apsw.SQLError:
        row = None
    if row is None:
        raise QueueError(f"no queued change with id {change_id}")
    return _row(row)


def drop_change(conn: apsw.Connection, change_id: int) -> QueuedChange:
    """Discard one dead change (its key is unblocked; later queued changes of it then apply)."""
    change = get_change(conn, change_id)
    if change.status is not QueueStatus.DEAD:
        raise QueueError(f"change {change_id} is {change.status.value}, not in the DLQ")
    with conn:
        conn.execute(f"DELETE FROM {_Q} WHERE id = ?", (change_id,))
    return change
