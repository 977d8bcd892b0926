"""The HTTP client of the pg2edge D1 Worker (``worker/index.js``): atomic batches and reads.

Transport (keep-alive session, retries of transient failures in place, 401/403
naming the URL and never the secret) is the shared remote plumbing,
:class:`pg2edge.pipeline.remote.http.RemoteSession`. This module adds the
Worker's two calls:

* :meth:`D1Client.batch` - statements run by one ``env.DB.batch()``, one D1
  transaction: all or nothing. D1 refusing a statement raises
  :class:`D1Refused` (with the failing statement's index when ``locate``).
* :meth:`D1Client.query` - one read; ``bookmark`` (D1 Sessions API) makes it
  see at least the write that returned that bookmark.

:class:`D1Connection` wraps reads in the small ``execute(...).fetchone()``
shape that ``pipeline.state`` and the status/validator readers use on a
SQLite file, so they read a D1 replica unchanged.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import apsw

from pg2edge.pipeline.d1.errors import D1Error, D1Refused
from pg2edge.pipeline.d1.limits import DEFAULT_LIMITS, D1Limits, Stmt
from pg2edge.pipeline.remote.connection import BufferedConnection, Cursor, is_read
from pg2edge.pipeline.remote.errors import RemoteProtocolError, RemoteSQLError
from pg2edge.pipeline.remote.http import RemoteSession, RetryPolicy
from pg2edge.pipeline.remote.url import RemoteTarget, parse_target

_SAFE = 2**53  # JSON numbers are doubles: larger integers travel as {"int": "digits"}


def encode_param(value: Any) -> Any:
    """A Python/SQLite value as the Worker's JSON parameter."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"integer {value} does not fit SQLite's 64-bit INTEGER")
        return value if -_SAFE < value < _SAFE else {"int": str(value)}
    if isinstance(value, float):
        if math.isinf(value):
            return {"real": "Infinity" if value > 0 else "-Infinity"}
        if math.isnan(value):
            raise ValueError("a NaN cannot be stored in SQLite (it becomes NULL); the codec reports it")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"blob": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot send a {type(value).__name__} to D1")


_EXACT = "\x01pg2edge:"  # marks a value read as text because D1's JSON results would change it


def exact_column(expr: str) -> str:
    """A select expression that reads ``expr`` exactly through the Worker: an integer beyond 2^53 (a JSON
    number would round it) and an infinite REAL (D1 returns it as null) travel as marked text, which
    :func:`exact_value` turns back."""
    return (f"CASE WHEN typeof({expr}) = 'integer' AND ({expr} > 9007199254740991 OR {expr} < -9007199254740991) "
            f"THEN char(1) || 'pg2edge:int:' || {expr} "
            f"WHEN typeof({expr}) = 'real' AND {expr} IN (9e999, -9e999) "
            f"THEN char(1) || 'pg2edge:real:' || CASE WHEN {expr} > 0 THEN 'inf' ELSE '-inf' END ELSE {expr} END")


def exact_value(value: Any) -> Any:
    """The value :func:`exact_column` marked, restored (other values unchanged)."""
    if isinstance(value, str) and value.startswith(_EXACT):
        kind, _, text = value[len(_EXACT):].partition(":")
        if kind == "int":
            return int(text)
        if kind == "real":
            return float(text)
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "blob" in value:
            return base64.b64decode(value["blob"])
    return value


@dataclass(frozen=True, slots=True)
class BatchResult:
    changes: list[int]
    bookmark: str | None


@dataclass(frozen=True, slots=True)
class Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    bookmark: str | None


class D1Client:
    """Talks to one pg2edge D1 Worker (``d1+https://HOST`` or ``d1+http://127.0.0.1:P``)."""

    def __init__(self, target: RemoteTarget, *, session: RemoteSession | None = None,
                 policy: RetryPolicy | None = None, limits: D1Limits = DEFAULT_LIMITS) -> None:
        if target.kind != "d1":
            raise D1Error(f"target {target.label} is not a D1 Worker URL (d1+https://HOST)")
        self.target = target
        self.session = session or RemoteSession(target, policy=policy)
        self.limits = limits
        self.bookmark: str | None = None  # of the last write: reads after it see it

    @property
    def label(self) -> str:
        return self.target.label

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> D1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, stmts: Sequence[Stmt], *, locate: bool = False) -> BatchResult:
        """Run ``stmts`` in one D1 transaction; D1Refused (nothing applied) when D1 refuses one."""
        body = {"statements": [{"sql": sql, "params": [encode_param(v) for v in params]} for sql, params in stmts],
                "locate": locate}
        resp = self.session.post_json("/v1/batch", body, allow=frozenset({400, 422}))
        data = self._json(resp.body)
        if resp.status != 200:
            index = data.get("index")
            where = ""
            if isinstance(index, int) and 0 <= index < len(stmts):
                where = f" (statement {index}: {_short(stmts[index][0])})"
            raise D1Refused(f"target {self.label}: D1 refused the batch: {data.get('error')}{where}",
                            index=index if isinstance(index, int) else None)
        changes = data.get("changes")
        if not isinstance(changes, list) or len(changes) != len(stmts):
            raise RemoteProtocolError(f"target {self.label}: the batch answer is not the pg2edge Worker's")
        self.bookmark = data.get("bookmark") or self.bookmark
        return BatchResult(changes=[int(c or 0) for c in changes], bookmark=data.get("bookmark"))

    def query(self, sql: str, params: Sequence[Any] = (), *, bookmark: str | None = None) -> Rows:
        body = {"sql": sql, "params": [encode_param(v) for v in params], "bookmark": bookmark or self.bookmark}
        resp = self.session.post_json("/v1/query", body, allow=frozenset({400, 422}))
        data = self._json(resp.body)
        if resp.status != 200:
            raise RemoteSQLError(f"target {self.label}: {data.get('error')} ({_short(sql)})")
        return Rows(columns=list(data.get("columns") or []),
                    rows=[tuple(decode_value(v) for v in row) for row in data.get("rows") or []],
                    bookmark=data.get("bookmark"))

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RemoteProtocolError(f"target {self.label} did not answer like the pg2edge D1 Worker "
                                      f"(is it deployed at this URL?): {body[:120]!r}")
        return data


class D1Connection(BufferedConnection):
    """Connection-shaped access to D1 through the Worker, for ``pipeline.state`` and the readers: the
    shape of the libSQL ``RemoteConnection`` (``BufferedConnection``); ``COMMIT`` sends the buffered
    writes as ONE ``env.DB.batch()``, a write outside a transaction is a batch of one."""

    def __init__(self, client: D1Client) -> None:
        super().__init__()
        self.client = client

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.client.label

    def _send(self, stmts: list[Stmt]) -> None:
        self.client.batch(stmts)

    def _run(self, sql: str, args: list[Any]) -> Cursor:
        if not is_read(sql):
            self.client.batch([(sql, args)])
            return Cursor()
        rows = self.client.query(sql, args)
        return Cursor(rows.rows, rows.columns)

    def _close(self) -> None:
        self.client.close()


class Recorder:
    """Collects the statements a ``pipeline.state`` writer runs, to send them inside a larger batch."""

    in_transaction = True

    def __init__(self) -> None:
        self.stmts: list[Stmt] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self.stmts.append((sql, list(params)))
        return Cursor()


def for_state(conn: D1Connection | Recorder) -> apsw.Connection:
    """``conn`` for ``pipeline.state``, whose functions are typed for apsw but only use ``execute``
    (and ``in_transaction`` to write): the D1 shapes provide exactly that."""
    return cast(apsw.Connection, conn)


def connect(target: str | RemoteTarget, *, config_token: str | None = None,
            policy: RetryPolicy | None = None) -> D1Connection:
    """A D1Connection for a ``d1+https://`` URL (secret from the environment or ``config_token``)."""
    parsed = target if isinstance(target, RemoteTarget) else parse_target(target, config_token=config_token)
    return D1Connection(D1Client(parsed, policy=policy))


def _short(sql: str, limit: int = 80) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[:limit] + "..."
