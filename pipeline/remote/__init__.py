"""Remote targets over HTTP: URL and token, a retrying keep-alive session, Hrana, a read connection.

Shared by the libSQL sink (sqld, Turso, tursodb) and the D1 sink. See
``url`` (parse_target, is_remote, resolve_token), ``http`` (RemoteSession,
RetryPolicy), ``hrana`` (HranaClient: execute, atomic batch, Stream) and
``connection`` (RemoteConnection: execute(sql, params) -> rows).
"""

from __future__ import annotations

from pg2edge.pipeline.remote.connection import RemoteConnection, RemoteNotReplica, connect, require_replica
from pg2edge.pipeline.remote.errors import (
    BatchConflict,
    RemoteAuthError,
    RemoteError,
    RemoteProtocolError,
    RemoteSQLError,
    RemoteTooLarge,
    RemoteUnavailable,
    RemoteURLError,
)
from pg2edge.pipeline.remote.hrana import HranaClient, Stmt, StmtResult, Stream
from pg2edge.pipeline.remote.http import RemoteSession, Response, RetryPolicy
from pg2edge.pipeline.remote.url import (
    ENV_TOKEN,
    ENV_TURSO_TOKEN,
    RemoteTarget,
    is_remote,
    parse_target,
    resolve,
    resolve_token,
)

__all__ = [
    "ENV_TOKEN", "ENV_TURSO_TOKEN", "BatchConflict", "HranaClient", "RemoteAuthError", "RemoteConnection",
    "RemoteError", "RemoteNotReplica", "RemoteProtocolError", "RemoteSQLError", "RemoteSession", "RemoteTarget",
    "RemoteTooLarge", "RemoteURLError", "RemoteUnavailable", "Response", "RetryPolicy", "Stmt", "StmtResult",
    "Stream", "connect", "is_remote", "parse_target", "require_replica", "resolve", "resolve_token",
]
