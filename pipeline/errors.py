"""Exceptions of the logical-decoding source, publication setup and applier."""

from __future__ import annotations

from pg2edge.errors import Pg2EdgeError, SourceError, StateError, TargetError

__all__ = ["ApplyError", "ProtocolError", "ReplicaIdentityError", "ReplicationError", "SchemaDriftError",
           "SlotTimeoutError", "StateError"]


class ProtocolError(SourceError):
    """A pgoutput or replication frame could not be decoded."""


class ReplicationError(SourceError):
    """The replication stream failed and could not be re-established."""


class SlotTimeoutError(SourceError):
    """Creating a replication slot waited too long for open write transactions."""


class ReplicaIdentityError(SourceError):
    """A table has no usable replica identity (no primary key, identity DEFAULT or NOTHING)."""


class SchemaDriftError(Pg2EdgeError):
    """A source column was dropped or retyped; the table's stream is paused."""


class ApplyError(TargetError):
    """A change could not be applied to the replica (names table and key)."""
