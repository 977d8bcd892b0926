"""Exceptions of the tenant split."""

from __future__ import annotations

from pg2edge.errors import ConfigError, TargetError


class TenantIdError(TargetError):
    """A tenant id cannot name a file (empty, NUL, too long, or escaping the tenant folder)."""


class TenantPatternError(ConfigError):
    """The tenant file pattern is unusable (no single ``{tenant}`` placeholder)."""


class TenantTableError(ConfigError):
    """A tenant table cannot be routed (tenant column not in its key and no REPLICA IDENTITY FULL)."""
