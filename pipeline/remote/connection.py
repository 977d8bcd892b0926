"""A connection-like object over Hrana, so readers of a local replica read a remote one the same way.

``RemoteConnection.execute(sql, params)`` returns a cursor with ``fetchone``,
``fetchall`` and iteration, like ``apsw.Connection.execute``; statement
errors are :class:`RemoteSQLError`, which is also an ``apsw.SQLError``.
Each statement runs on its own short stream. ``BEGIN`` (or ``with conn:``)
buffers writes until ``COMMIT`` sends them as one atomic batch, so
``pipeline.state`` writers (which require ``conn.in_transaction``) work
unchanged on a remote target. :class:`BufferedConnection` is that shape,
shared with the D1 Worker's connection (``pipeline.d1.client.D1Connection``).

Bulk writes do not go through here: they use one atomic Hrana batch
(:meth:`HranaClient.batch`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pg2edge.pipeline.remote.errors import RemoteError, RemoteSQLError
from pg2edge.pipeline.remote.hrana import HranaClient, Stmt, StmtResult
from pg2edge.pipeline.remote.http import RetryPolicy
from pg2edge.pipeline.remote.url import RemoteTarget, parse_target
from pg2edge.pipeline.state import STATE_TABLE

_BEGIN = re.compile(r"^\s*BEGIN\b", re.I)
_END = re.compile(r"^\s*(COMMIT|END|ROLLBACK)\s*(TRANSACTION)?\s*;?\s*$", re.I)
_READ = re.compile(r"^\s*(SELECT|WITH|PRAGMA\s+\w+\s*(\(|$)|EXPLAIN|VALUES)", re.I)


class RemoteNotReplica(RemoteError):
    """The remote database has no pg2edge state table: it is not (yet) a pg2edge replica."""


class Cursor:
    """Rows of one statement, read like an apsw cursor (``fetchone`` consumes, as apsw's does)."""

    def __init__(self, rows: Sequence[tuple[Any, ...]] = (), columns: Sequence[str] = (), rowcount: int = 0) -> None:
        self._columns = list(columns)
        self._rows = iter(list(rows))
        self._rowcount = rowcount

    @classmethod
    def of(cls, result: StmtResult) -> Cursor:
        return cls(result.rows, result.columns, result.affected_row_count)

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows

    @property
    def description(self) -> list[tuple[str, None]]:
        return [(c, None) for c in self._columns]

    def getdescription(self) -> list[tuple[str, None]]:
        return self.description

    @property
    def rowcount(self) -> int:
        return self._rowcount


class BufferedConnection:
    """The connection shape of every remote target: ``execute(sql, params)`` like apsw, and transactions
    as ONE atomic request. ``BEGIN`` (or ``with conn:``) starts buffering writes; reads inside it run at
    once against the committed state; ``COMMIT`` sends the buffered writes with :meth:`_send` (one Hrana
    batch, one D1 ``batch()``), ``ROLLBACK`` drops them. (tursodb keeps no stream between requests and D1
    has no interactive transactions, so a batch is the portable transaction.) A subclass provides
    ``label``, :meth:`_send`, :meth:`_run` (a statement outside a transaction, or a read) and :meth:`_close`.
    """

    label: str

    def __init__(self) -> None:
        self._pending: list[Stmt] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._pending is not None

    @property
    def pending(self) -> list[Stmt]:
        """The writes buffered since BEGIN (a caller may send them itself and then ROLLBACK)."""
        if self._pending is None:
            raise RemoteSQLError(f"target {self.label}: no transaction is active")
        return self._pending

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        if isinstance(params, Mapping):
            raise TypeError(f"{type(self).__name__}.execute takes positional parameters only")
        args = list(params or ())
        if _BEGIN.match(sql):
            if self._pending is not None:
                raise RemoteSQLError(f"target {self.label}: cannot start a transaction within a transaction")
            self._pending = []
            return Cursor()
        end = _END.match(sql)
        if end:
            if self._pending is None:
                raise RemoteSQLError(f"target {self.label}: cannot {end.group(1).lower()} - no transaction is active")
            pending, self._pending = self._pending, None
            if end.group(1).upper() != "ROLLBACK" and pending:
                self._send(pending)
            return Cursor()
        if self._pending is not None and not is_read(sql):
            self._pending.append((sql, args))
            return Cursor()
        return self._run(sql, args)

    def _send(self, stmts: list[Stmt]) -> None:
        raise NotImplementedError

    def _run(self, sql: str, args: list[Any]) -> Cursor:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> BufferedConnection:
        self.execute("BEGIN")
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._pending is not None:
            self.execute("ROLLBACK" if exc_type is not None else "COMMIT")

    def close(self) -> None:
        self._pending = None
        self._close()


def is_read(sql: str) -> bool:
    """A statement that only reads (run at once even inside a buffered transaction)."""
    return bool(_READ.match(sql))


class RemoteConnection(BufferedConnection):
    """Reads (and small transactional writes) on a libSQL target through Hrana (see BufferedConnection)."""

    def __init__(self, target: RemoteTarget, *, client: HranaClient | None = None,
                 policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.target = target
        self.client = client or HranaClient(target, policy=policy)
        self._changes = 0

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.target.label

    def _send(self, stmts: list[Stmt]) -> None:
        self.client.batch(stmts)

    def _run(self, sql: str, args: list[Any]) -> Cursor:
        result = self.client.execute(sql, args)
        self._changes = result.affected_row_count
        return Cursor.of(result)

    def changes(self) -> int:
        """Rows changed by the last statement run at once (tursodb reports 0 for INSERT)."""
        return self._changes

    def _close(self) -> None:
        self.client.close()


def connect(target: str | RemoteTarget, *, config_token: str | None = None,
            policy: RetryPolicy | None = None) -> RemoteConnection:
    """A RemoteConnection for a target URL (token from the environment or ``config_token``)."""
    parsed = target if isinstance(target, RemoteTarget) else parse_target(target, config_token=config_token)
    if parsed.kind == "d1":  # the pg2edge D1 Worker: the same connection shape over its HTTP API
        from pg2edge.pipeline.d1.client import connect as connect_d1

        return connect_d1(parsed, policy=policy)  # type: ignore[return-value]
    return RemoteConnection(parsed, policy=policy)


def require_replica(conn: RemoteConnection) -> None:
    """Refuse a remote database that pg2edge never wrote (no ``_pg2edge_state`` table)."""

    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (STATE_TABLE,)).fetchone()
    if not row or not row[0]:
        raise RemoteNotReplica(f"target {conn.label} is not a pg2edge replica (no {STATE_TABLE} table); "
                               "run `pg2edge sync` against it first")
