"""Exceptions of the cutover actions."""

from __future__ import annotations

from pg2edge.errors import SourceError, TargetError


class FreezeError(SourceError):
    """Tables cannot be frozen or unfrozen on the source (names the table)."""


class BackupError(TargetError):
    """The replica cannot be backed up (names the file)."""


class CutoverError(TargetError):
    """A cutover action cannot run in the replica's current state (names the replica and the step)."""
