"""Exceptions of the D1 target."""

from __future__ import annotations

from pg2edge.errors import TargetError


class D1Error(TargetError):
    """The D1 Worker cannot be reached or answered with an error (names the URL, never the secret)."""


class D1AuthError(D1Error):
    """The D1 Worker refused the secret (401)."""


class D1Refused(D1Error):
    """D1 refused a statement of a batch; nothing of the batch was applied.

    ``index`` is the first failing statement when the Worker located it.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class D1LimitError(D1Error):
    """A row, statement or table does not fit a D1 limit (names the table and the size)."""
