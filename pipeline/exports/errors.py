"""Exceptions of the edge exports."""

from __future__ import annotations

from pg2edge.errors import TargetError


class ExportError(TargetError):
    """An edge export cannot be written (the replica, the output path or a table is unusable)."""


class RowTooLargeError(ExportError):
    """One row's INSERT is larger than the target's statement limit (names table and key)."""
