"""Exceptions shared by every phase; the CLI maps them to exit codes."""

from __future__ import annotations


class Pg2EdgeError(Exception):
    """Base of every error pg2edge reports to an operator."""

    exit_code = 2


class ConfigError(Pg2EdgeError):
    """The configuration file, environment or flags hold a bad key or value."""


class SourceError(Pg2EdgeError):
    """The source PostgreSQL cannot be reached or refuses what we need."""


class PrivilegeError(SourceError):
    """The source role lacks a privilege a command needs."""


class EmptyStatsError(Pg2EdgeError):
    """The statistics hold no traffic yet (for example, just reset)."""


class TargetError(Pg2EdgeError):
    """The SQLite target cannot be opened or written."""


class StateError(TargetError):
    """The replica's state table is missing, foreign or inconsistent."""
