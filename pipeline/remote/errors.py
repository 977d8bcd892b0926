"""Errors of remote targets (libSQL/sqld/tursodb over Hrana, the D1 Worker).

Every message names the target by its label (scheme, host, port, path) and
never carries the auth token: the token lives only in the HTTP session's
headers, which no message, log line or report reads.
"""

from __future__ import annotations

import apsw

from pg2edge.errors import TargetError


class RemoteError(TargetError):
    """A remote target refused or failed a request (names the target, never the token)."""


class RemoteURLError(RemoteError):
    """A target URL is malformed, uses an unknown scheme, or carries a credential."""


class RemoteAuthError(RemoteError):
    """The target answered 401/403: the token is missing, wrong or lacks write access."""


class RemoteUnavailable(RemoteError):
    """The target did not answer (refused, reset, timeout, 5xx) within the retry budget."""


class RemoteProtocolError(RemoteError):
    """The target answered something that is not Hrana over HTTP (wrong URL or not a libSQL server)."""


class RemoteTooLarge(RemoteError):
    """A request is over the target's size limit (one statement or row too big to send)."""


class RemoteSQLError(apsw.SQLError, RemoteError):
    """A statement failed on the remote database.

    It is also an ``apsw.SQLError`` so readers written for a local replica
    (``pipeline.state.read_record`` treats "no such table" as "no state yet")
    work unchanged on a remote connection.
    """

    def __init__(self, message: str, *, code: str | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.step = step


class BatchConflict(RemoteError):
    """An atomic batch's guard failed: the stored position is not the one the batch was planned on."""
