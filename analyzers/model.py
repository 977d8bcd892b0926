"""Typed results of an analysis; ``as_dict()`` is the stable JSON contract.

``ratio`` in JSON: a number (reads / writes, 3 decimals); the string ``"inf"``
when a table has reads and no writes (the best candidate); ``null`` only when
the table had no traffic at all (verdict ``idle``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """A blocker (prevents a move) or a warning (needs care), with a stable code."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class TopQuery:
    query: str
    calls: int
    mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "calls": self.calls, "mean_ms": round(self.mean_ms, 3)}


@dataclass(slots=True)
class TableReport:
    schema: str
    table: str
    reads: int
    writes: int
    rows: int
    bytes: int
    seq_tup_read: int = 0
    idx_tup_fetch: int = 0
    verdict: str = "idle"
    reads_per_day: float = 0.0
    writes_per_day: float = 0.0
    blockers: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    group: list[str] | None = None
    top_queries: list[TopQuery] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def ratio(self) -> float | None:
        """reads / writes; inf when there are reads and no writes; None without traffic."""
        if self.writes == 0:
            return math.inf if self.reads > 0 else None
        return self.reads / self.writes

    @property
    def read_share(self) -> float | None:
        total = self.reads + self.writes
        return None if total == 0 else self.reads / total

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        share = self.read_share
        return {
            "schema": self.schema,
            "table": self.table,
            "reads": self.reads,
            "writes": self.writes,
            "ratio": None if ratio is None else ("inf" if math.isinf(ratio) else round(ratio, 3)),
            "read_share": None if share is None else round(share, 4),
            "reads_per_day": round(self.reads_per_day, 1),
            "writes_per_day": round(self.writes_per_day, 1),
            "verdict": self.verdict,
            "rows": self.rows,
            "bytes": self.bytes,
            "blockers": [b.as_dict() for b in self.blockers],
            "warnings": [w.as_dict() for w in self.warnings],
            "group": self.group,
            "top_queries": [q.as_dict() for q in self.top_queries],
        }


@dataclass(slots=True)
class Summary:
    read_share: float | None
    read_heavy: bool
    candidate_bytes: int
    total_bytes: int
    fits_dataset_limit: bool
    verdicts: dict[str, int]
    recommendation: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_share": None if self.read_share is None else round(self.read_share, 4),
            "read_heavy": self.read_heavy,
            "candidate_bytes": self.candidate_bytes,
            "total_bytes": self.total_bytes,
            "fits_dataset_limit": self.fits_dataset_limit,
            "verdicts": self.verdicts,
            "recommendation": self.recommendation,
            "notes": self.notes,
        }


@dataclass(slots=True)
class AnalysisReport:
    generated_at: str
    database: str
    stats_reset: str | None
    window_seconds: float
    target_profile: str
    tables: list[TableReport]
    summary: Summary
    wal_level: str | None = None  # the source's wal_level: snapshot and sync need 'logical'

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name or t.qualified == name:
                return t
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "source": {"database": self.database, "stats_reset": self.stats_reset, "wal_level": self.wal_level},
            "window_seconds": self.window_seconds,
            "target_profile": self.target_profile,
            "tables": [t.as_dict() for t in self.tables],
            "summary": self.summary.as_dict(),
        }
