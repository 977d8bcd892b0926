"""Exceptions of the migration flows (no Prefect import: the CLI maps them to exit codes)."""

from __future__ import annotations

from pg2edge.errors import Pg2EdgeError


class GateFailed(Pg2EdgeError):
    """A gate between two phases failed; the migration stops before the next phase (names the gate)."""

    exit_code = 1


class NotApproved(Pg2EdgeError):
    """The cutover was rejected (or the approval timed out) at the pause before phase 4."""

    exit_code = 1


class NoServer(Pg2EdgeError):
    """A command needs a real Prefect server and PREFECT_API_URL is not set."""
