"""A small Hrana-over-HTTP client (``/v3/pipeline`` where offered, else ``/v2/pipeline``).

Protocol: the libSQL project's HTTP_V2_SPEC and HRANA_3_SPEC (JSON encoding).
Servers measured here: sqld 0.24.32 (v2 and v3) and tursodb 0.6 (v2; it
has no ``close`` request and reports ``affected_row_count`` 0 on INSERT, so
nothing here relies on either).

* :meth:`HranaClient.execute` runs one statement on a fresh stream.
* :meth:`HranaClient.batch` runs statements atomically in ONE request: a Hrana
  batch ``BEGIN; s1; ...; sN; COMMIT`` where each step runs only if the one
  before succeeded and a final ``ROLLBACK`` runs if anything failed, so a crash
  or a lost answer leaves all of it or none of it.
* :class:`Stream` keeps a baton across requests (an interactive transaction,
  e.g. a validator's consistent read).
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from pg2edge.pipeline.remote.errors import (
    RemoteProtocolError,
    RemoteSQLError,
    RemoteTooLarge,
)
from pg2edge.pipeline.remote.http import RemoteSession, RetryPolicy
from pg2edge.pipeline.remote.url import RemoteTarget

log = logging.getLogger(__name__)

Stmt = tuple[str, Sequence[Any]]  # (sql, positional args)

# sqld accepts request bodies far larger than this; staying well under the smallest limit we know
# (Turso's edge proxies) keeps one request from being refused for size. Override per client.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


# -- values ---------------------------------------------------------------------------
def encode_value(value: Any) -> dict[str, Any]:
    """A Python/SQLite value as a Hrana Value (integers as strings, blobs base64)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "integer", "value": "1" if value else "0"}
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"integer {value} does not fit SQLite's 64-bit INTEGER")
        return {"type": "integer", "value": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"float {value!r} cannot be sent over Hrana's JSON encoding")
        return {"type": "float", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot send a {type(value).__name__} as a SQLite value")


def decode_value(value: dict[str, Any]) -> Any:
    kind = value.get("type")
    if kind == "null":
        return None
    if kind == "integer":
        return int(value["value"])
    if kind == "float":
        return float(value["value"])
    if kind == "text":
        return value["value"]
    if kind == "blob":
        raw = value.get("base64", "")
        return base64.b64decode(raw + "=" * (-len(raw) % 4))
    raise RemoteProtocolError(f"unknown Hrana value type {kind!r}")


def value_text(value: Any) -> str:
    """``encode_value`` as JSON text, built directly (the hot path of big batches; ASCII, so len == bytes)."""
    if value is None:
        return '{"type":"null"}'
    if isinstance(value, str):
        return '{"type":"text","value":' + _quote(value) + "}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(encode_value(value), separators=(",", ":"))
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"integer {value} does not fit SQLite's 64-bit INTEGER")
        return '{"type":"integer","value":"%d"}' % value
    if not math.isfinite(value):
        raise ValueError(f"float {value!r} cannot be sent over Hrana's JSON encoding")
    return '{"type":"float","value":' + repr(value) + "}"


class Encoded(list[str]):
    """Statement arguments already encoded with :func:`value_text` (a bulk writer sizes them exactly)."""


def stmt_text(sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> str:
    """A Hrana Stmt as JSON text."""
    parts = ['{"sql":', _quote(sql)]
    if args:
        parts += [',"args":[', ",".join(args if isinstance(args, Encoded) else [value_text(a) for a in args]), "]"]
    parts.append(',"want_rows":true}' if want_rows else ',"want_rows":false}')
    return "".join(parts)


def stmt_json(sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"sql": sql, "want_rows": want_rows}
    if args:
        out["args"] = [encode_value(a) for a in args]
    return out


@dataclass(frozen=True, slots=True)
class StmtResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    affected_row_count: int = 0  # tursodb reports 0 for INSERT: do not rely on it
    last_insert_rowid: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StmtResult:
        rowid = data.get("last_insert_rowid")
        return cls(columns=[c.get("name") or "" for c in data.get("cols") or []],
                   rows=[tuple(decode_value(v) for v in row) for row in data.get("rows") or []],
                   affected_row_count=int(data.get("affected_row_count") or 0),
                   last_insert_rowid=int(rowid) if rowid is not None else None)


def _error(err: dict[str, Any] | None, label: str, *, step: int | None = None, sql: str | None = None) -> RemoteSQLError:
    err = err or {}
    message = str(err.get("message") or "unknown error").replace("\n", " ")
    where = f" (statement {step}: {_short(sql)})" if sql is not None else ""
    return RemoteSQLError(f"target {label}: {message}{where}", code=err.get("code"), step=step)


def _short(sql: str | None, limit: int = 80) -> str:
    text = " ".join((sql or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(slots=True)
class PipelineResult:
    results: list[dict[str, Any]]
    baton: str | None
    base_url: str | None


@dataclass(slots=True)
class _Server:
    version: str | None = None  # "v3" or "v2"
    close: bool = True  # tursodb has no close request
    notes: list[str] = field(default_factory=list)


class HranaClient:
    """Hrana over HTTP against one target; one keep-alive session, requests in order."""

    def __init__(self, target: RemoteTarget, *, session: RemoteSession | None = None,
                 policy: RetryPolicy | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 like: HranaClient | None = None) -> None:
        """``like``: a client of the same server (another namespace of one sqld): its negotiated
        protocol version is shared, so a new tenant database costs no negotiation requests."""
        self.target = target
        self.session = session or RemoteSession(target, policy=policy)
        self.max_request_bytes = max_request_bytes
        # run before BEGIN in every batch (connection-level settings such as PRAGMA foreign_keys = OFF)
        self.batch_prelude: list[str] = []
        self._server: _Server = like._server if like is not None else _Server()

    @property
    def label(self) -> str:
        return self.target.label

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HranaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- negotiation ----------------------------------------------------------------
    @property
    def version(self) -> str:
        """``v3`` when the server answers ``GET /v3``, else ``v2``; not Hrana at all -> RemoteProtocolError."""
        if self._server.version is None:
            self._negotiate()
        assert self._server.version is not None
        return self._server.version

    def _negotiate(self) -> None:
        maybe = frozenset({400, 404, 405})
        for version in ("v3", "v2"):
            if 200 <= self.session.get(f"/{version}", allow=maybe).status < 300:
                self._server.version = version
                break
        else:
            # tursodb answers no GET, only POST /v2/pipeline
            probe = self.session.post_json("/v2/pipeline", {"baton": None, "requests": []}, allow=maybe)
            data = _json(probe.body)
            if not (200 <= probe.status < 300 and isinstance(data, dict) and "results" in data):
                raise RemoteProtocolError(f"target {self.label} does not speak Hrana over HTTP (GET /v3, GET /v2 "
                                          f"and POST /v2/pipeline answered HTTP {probe.status})")
            self._server.version = "v2"
        # tursodb rejects the whole request (HTTP 500) when it holds a close: ask once with nothing else
        probe = self.session.post_json(f"/{self._server.version}/pipeline",
                                       {"baton": None, "requests": [{"type": "close"}]},
                                       allow=frozenset({400, 422, 500}), retry=False)
        self._server.close = 200 <= probe.status < 300
        log.debug("target %s speaks Hrana %s (close request: %s)", self.label, self._server.version,
                  self._server.close)

    # -- pipeline ---------------------------------------------------------------------
    def pipeline(self, requests: Sequence[dict[str, Any] | str], *, baton: str | None = None,
                 close: bool = False) -> PipelineResult:
        """POST one pipeline (requests as dicts or JSON text); with ``close`` a close request is appended
        when the server knows it. A body over ``max_request_bytes`` raises RemoteTooLarge unsent."""
        version = self.version  # negotiates first: whether the server knows "close"
        body_requests = [r if isinstance(r, str) else json.dumps(r, separators=(",", ":")) for r in requests]
        if close and self._server.close:
            body_requests.append('{"type":"close"}')
        body = ('{"baton":' + (_quote(baton) if baton is not None else "null") + ',"requests":[' +
                ",".join(body_requests) + "]}").encode("ascii")
        if len(body) > self.max_request_bytes:
            raise RemoteTooLarge(f"target {self.label}: one request would be {len(body)} bytes, over the "
                                 f"{self.max_request_bytes}-byte limit")
        resp = self.session.post_bytes(f"/{version}/pipeline", body, transient=frozenset({404}))
        data = _json(resp.body)
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise RemoteProtocolError(f"target {self.label}: pipeline answer is not Hrana: {resp.body[:120]!r}")
        results = data["results"]
        if len(results) != len(body_requests):
            raise RemoteProtocolError(f"target {self.label}: {len(results)} results for {len(body_requests)} requests")
        if len(body_requests) > len(requests):
            results = results[:len(requests)]
        return PipelineResult(results, data.get("baton"), data.get("base_url"))

    # -- one statement --------------------------------------------------------------------
    def execute(self, sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> StmtResult:
        res = self.pipeline(['{"type":"execute","stmt":' + stmt_text(sql, args, want_rows=want_rows) + "}"],
                            close=True)
        return _execute_result(res.results[0], self.label, sql)

    # -- atomic batch ----------------------------------------------------------------------
    def batch(self, stmts: Sequence[Stmt], *, atomic: bool = True) -> list[StmtResult]:
        """Run ``stmts`` in one request; atomic: all or nothing (BEGIN ... COMMIT, ROLLBACK on failure).

        Raises RemoteSQLError naming the first failing statement's index (0-based in ``stmts``).
        """
        steps = batch_steps(stmts, atomic=atomic, prelude=self.batch_prelude)
        res = self.pipeline(['{"type":"batch","batch":{"steps":[' + ",".join(steps) + "]}}"], close=True)
        return batch_results(res.results[0], stmts, self.label, atomic=atomic, prelude=len(self.batch_prelude))

    def stream(self) -> Stream:
        return Stream(self)


def batch_steps(stmts: Sequence[Stmt], *, atomic: bool = True, prelude: Sequence[str] = ()) -> list[str]:
    """Hrana batch steps (JSON text): every statement runs only if the previous step succeeded."""
    steps: list[str] = []
    for sql in prelude:
        cond = ',"condition":{"type":"ok","step":%d}' % (len(steps) - 1) if steps else ""
        steps.append('{"stmt":' + stmt_text(sql, want_rows=False) + cond + "}")
    if atomic:
        cond = ',"condition":{"type":"ok","step":%d}' % (len(steps) - 1) if steps else ""
        steps.append('{"stmt":' + stmt_text("BEGIN IMMEDIATE", want_rows=False) + cond + "}")
    for sql, args in stmts:
        cond = ',"condition":{"type":"ok","step":%d}' % (len(steps) - 1) if steps else ""
        steps.append('{"stmt":' + stmt_text(sql, args) + cond + "}")
    if atomic:
        last = len(steps) - 1
        steps.append('{"stmt":' + stmt_text("COMMIT", want_rows=False) + ',"condition":{"type":"ok","step":%d}}' % last)
        steps.append('{"stmt":' + stmt_text("ROLLBACK", want_rows=False) +
                     ',"condition":{"type":"not","cond":{"type":"ok","step":%d}}}' % (last + 1))
    return steps


def batch_results(result: dict[str, Any], stmts: Sequence[Stmt], label: str, *, atomic: bool,
                  prelude: int = 0) -> list[StmtResult]:
    if result.get("type") == "error":
        raise _error(result.get("error"), label)
    payload = (result.get("response") or {}).get("result") or {}
    errors = payload.get("step_errors") or []
    outs = payload.get("step_results") or []
    offset = prelude + (1 if atomic else 0)
    for i, err in enumerate(errors):
        if err is not None:
            index = i - offset
            sql = stmts[index][0] if 0 <= index < len(stmts) else ("BEGIN/prelude" if index < 0 else "COMMIT")
            raise _error(err, label, step=index, sql=sql)
    if atomic and (len(outs) < offset + len(stmts) + 1 or outs[offset + len(stmts)] is None):
        raise RemoteSQLError(f"target {label}: the batch was not committed (no error reported)")
    return [StmtResult.from_json(r) if r is not None else StmtResult([], []) for r in outs[offset:offset + len(stmts)]]


def _execute_result(result: dict[str, Any], label: str, sql: str) -> StmtResult:
    if result.get("type") == "error":
        raise _error(result.get("error"), label, sql=sql)
    return StmtResult.from_json((result.get("response") or {}).get("result") or {})


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class Stream:
    """An interactive Hrana stream (baton kept between requests); close() ends it."""

    def __init__(self, client: HranaClient) -> None:
        self.client = client
        self.baton: str | None = None
        self._open = False

    def execute(self, sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> StmtResult:
        res = self.client.pipeline([{"type": "execute", "stmt": stmt_json(sql, args, want_rows=want_rows)}],
                                   baton=self.baton)
        self.baton = res.baton
        self._open = True
        return _execute_result(res.results[0], self.client.label, sql)

    def executemany(self, items: Iterable[Stmt]) -> list[StmtResult]:
        stmts = list(items)
        res = self.client.pipeline([{"type": "execute", "stmt": stmt_json(s, a)} for s, a in stmts],
                                   baton=self.baton)
        self.baton = res.baton
        self._open = True
        return [_execute_result(r, self.client.label, s) for r, (s, _) in zip(res.results, stmts, strict=True)]

    def close(self) -> None:
        if self._open and self.baton is not None and self.client._server.close:
            try:
                self.client.pipeline([], baton=self.baton, close=True)
            except Exception as exc:  # the server drops idle streams itself
                log.debug("closing a stream on %s failed: %s", self.client.label, exc)
        self.baton = None
        self._open = False
