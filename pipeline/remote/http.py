"""One keep-alive HTTP session per remote target, with in-place retries.

Requests are sent one at a time and a failed one is retried (same body, same
place in the sequence) before anything after it is sent, so retries never
reorder changes. Transient failures are connection errors, timeouts, 429 and
5xx answers: retried with exponential back-off until ``retry_for`` seconds have
passed, then :class:`RemoteUnavailable`. 401/403 raise :class:`RemoteAuthError`
at once; 413 raises :class:`RemoteTooLarge`. The token is set once as a header
and never read back; messages name ``target.label`` only.

A retried write may have been applied by the server before its answer was lost:
callers that write make their request idempotent (the libSQL sink guards each
batch with the stored position, see ``hrana.Batch``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pg2edge.pipeline.remote.errors import (
    RemoteAuthError,
    RemoteError,
    RemoteProtocolError,
    RemoteTooLarge,
    RemoteUnavailable,
)
from pg2edge.pipeline.remote.url import RemoteTarget

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
WARN_AFTER = 5.0  # seconds of failed attempts before a retry is logged as a warning


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off of transient failures: first delay, cap, and how long to keep trying in total.

    ``retry_for`` defaults to $PG2EDGE_REMOTE_RETRY_FOR seconds, else 120 (a restarting server comes back).
    """

    first_delay: float = 0.1
    max_delay: float = 5.0
    retry_for: float = field(default_factory=lambda: _env_seconds("PG2EDGE_REMOTE_RETRY_FOR", 120.0))
    timeout: float = 300.0  # one request's read (a big batch on a slow or loaded server); connect: 10 s


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RemoteSession:
    """``post_json``/``get`` against ``target.base_url`` with one pooled keep-alive connection."""

    def __init__(self, target: RemoteTarget, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, pool: httpx.Client | None = None) -> None:
        """``pool``: a client shared by many sessions (:func:`shared_pool`; many tenant databases over a
        bounded number of connections); it is not closed with this session."""
        self.target = target
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._headers: dict[str, str] = {}
        if target.token:
            self._headers["Authorization"] = f"Bearer {target.token}"
        if target.host_header:
            self._headers["Host"] = target.host_header
        self._owned = pool is None
        self._client = pool if pool is not None else shared_pool(max_connections=4, keepalive=2,
                                                                   timeout=self.policy.timeout)
        self.requests = 0
        self.retries = 0

    @property
    def label(self) -> str:
        return self.target.label

    def url(self, path: str) -> str:
        return self.target.base_url + (path if path.startswith("/") else "/" + path)

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_auth(self, value: str) -> None:
        """The Authorization header value (a scheme other than Bearer, e.g. sqld's admin ``basic KEY``)."""
        self._headers["Authorization"] = value

    # -- requests ----------------------------------------------------------------
    def delete(self, path: str, *, retry: bool = True, allow: frozenset[int] = frozenset()) -> Response:
        return self._send("DELETE", path, None, retry=retry, allow=allow)

    def get(self, path: str, *, retry: bool = True, allow: frozenset[int] = frozenset()) -> Response:
        return self._send("GET", path, None, retry=retry, allow=allow)

    def post_json(self, path: str, body: Any, *, retry: bool = True, allow: frozenset[int] = frozenset()) -> Response:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        return self._send("POST", path, data, retry=retry, allow=allow)

    def post_bytes(self, path: str, data: bytes, *, retry: bool = True, allow: frozenset[int] = frozenset(),
                   transient: frozenset[int] = frozenset()) -> Response:
        """``transient``: more statuses to retry (404 once the endpoint is known to exist: sqld answers
        "Namespace `default` doesn't exist" while it restarts)."""
        return self._send("POST", path, data, retry=retry, allow=allow, transient=transient)

    def _send(self, method: str, path: str, data: bytes | None, *, retry: bool, allow: frozenset[int],
              transient: frozenset[int] = frozenset()) -> Response:
        url = self.url(path)
        delay = self.policy.first_delay
        started = time.monotonic()
        deadline = started + self.policy.retry_for
        warned = False
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            problem: str
            try:
                headers = {**self._headers, "Content-Type": "application/json"} if data is not None else self._headers
                resp = self._client.request(method, url, content=data, headers=headers)
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = _transport_problem(exc)
            else:
                status = resp.status_code
                if 200 <= status < 300 or status in allow:
                    return Response(status, resp.content)
                if status in (401, 403):
                    raise RemoteAuthError(
                        f"target {self.label}: authentication refused (HTTP {status}); check the token in "
                        "$PG2EDGE_TARGET_AUTH_TOKEN, $TURSO_AUTH_TOKEN or [target] auth_token")
                if status == 413:
                    raise RemoteTooLarge(f"target {self.label}: request of {len(data or b'')} bytes is over the "
                                         "server's size limit (HTTP 413)")
                if status not in TRANSIENT_STATUS and status not in transient:
                    raise RemoteProtocolError(f"target {self.label}: {method} {path} answered HTTP {status}: "
                                              f"{_snippet(resp.content)}")
                problem = f"HTTP {status} {_snippet(resp.content)}".rstrip()
            if not retry or time.monotonic() + delay > deadline:
                raise RemoteUnavailable(f"target {self.label}: {problem} (after {attempt} attempt(s) over "
                                        f"{self.policy.retry_for if retry else 0:g} s)")
            self.retries += 1
            # quiet for a blip; one warning once the target has been away for a while (a daemon keeps going)
            loud = not warned and time.monotonic() - started >= WARN_AFTER
            warned = warned or loud
            log.log(logging.WARNING if loud else logging.INFO, "target %s: %s; retrying in %.2f s (attempt %d, "
                    "giving up after %g s)", self.label, problem, delay, attempt + 1, self.policy.retry_for)
            self._sleep(delay)
            delay = min(delay * 2, self.policy.max_delay)


def shared_pool(*, max_connections: int, keepalive: int | None = None, timeout: float = 300.0) -> httpx.Client:
    """An HTTP client whose connections (over every host it talks to) never exceed ``max_connections``;
    sessions given it as ``pool`` send their own token and Host header per request."""
    return httpx.Client(
        headers={"User-Agent": "pg2edge", "Accept": "application/json"},
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=keepalive if keepalive is not None else max_connections,
                            keepalive_expiry=30.0),
        follow_redirects=False)


def _transport_problem(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused (is the server running?)"
    return f"{type(exc).__name__}: {text}"[:200]


def _snippet(body: bytes, limit: int = 160) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), (str, dict)):
            err = parsed["error"]
            text = err.get("message", str(err)) if isinstance(err, dict) else err
    except ValueError:
        pass
    return text[:limit]


__all__ = ["RemoteError", "RemoteSession", "Response", "RetryPolicy"]
