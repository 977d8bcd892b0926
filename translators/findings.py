"""Findings: what cannot be translated exactly, recorded with a level, never dropped.

Like sqlglot's unsupported-level: a finding is reported, not raised, unless
the caller runs in strict mode (``--strict``), where any finding at level
``warn`` or above is fatal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pg2edge.errors import Pg2EdgeError


class Level(enum.IntEnum):
    INFO = 10
    WARN = 20
    ERROR = 30


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that did not translate exactly: a stable code, the object it is about, a message."""

    level: Level
    code: str
    object: str  # "schema.table.column", "table", or a query excerpt
    message: str

    def __str__(self) -> str:
        return f"{self.level.name.lower()} {self.code} {self.object}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level.name.lower(), "code": self.code, "object": self.object, "message": self.message}


class StrictModeError(Pg2EdgeError):
    """Strict mode: at least one finding at level warn or above."""

    exit_code = 1

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("; ".join(str(f) for f in findings))


def check_strict(findings: list[Finding], *, strict: bool) -> None:
    """Raise StrictModeError when strict and any finding is warn or worse."""
    if strict:
        bad = [f for f in findings if f.level >= Level.WARN]
        if bad:
            raise StrictModeError(bad)
