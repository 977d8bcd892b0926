"""What an export wrote, for the CLI to print and tests to check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ExportResult:
    output: Path
    format: str
    tables: list[str] = field(default_factory=list)
    rows: int = 0
    statements: int = 0
    largest_statement: int = 0  # bytes (d1 only)
    excluded: list[str] = field(default_factory=list)  # pg2edge's internal tables left out

    def summary(self) -> str:
        text = f"wrote {self.output} ({self.format}): {len(self.tables)} tables, {self.rows} rows"
        if self.format == "d1":
            text += f", {self.statements} statements, largest {self.largest_statement} bytes"
        if self.excluded:
            text += f"; left out pg2edge's internal tables {', '.join(self.excluded)}"
        return text
