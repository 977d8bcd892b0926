"""The validation report: typed, with ``as_dict()`` as the JSON contract, and its renderings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Kind = Literal["missing", "extra", "changed"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Mismatch:
    key: dict[str, Any]
    kind: Kind
    diff: dict[str, Any] = field(default_factory=dict)  # deepdiff path -> {"source": x, "replica": y}

    def as_dict(self) -> dict[str, Any]:
        return {"key": _jsonable(self.key), "kind": self.kind, "diff": _jsonable(self.diff)}

    def describe(self) -> str:
        key = ", ".join(f"{k}={v!r}" for k, v in self.key.items())
        if self.kind != "changed":
            return f"{self.kind} {key}"
        paths = "; ".join(f"{p}: {d['source']!r} -> {d['replica']!r}" for p, d in self.diff.items())
        return f"changed {key}: {paths}"


@dataclass
class TableResult:
    table: str
    source_rows: int | None = None
    replica_rows: int | None = None
    checked: int = 0  # rows compared (sampled rows, or every row in full mode)
    mismatches: list[Mismatch] = field(default_factory=list)
    chunks: int = 0
    rechecked: int = 0  # keys that differed at first and were read again after the replica caught up
    repaired: int = 0
    error: str | None = None

    @property
    def clean(self) -> bool:
        return not self.mismatches and self.error is None and self.source_rows == self.replica_rows

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "source_rows": self.source_rows, "replica_rows": self.replica_rows,
                "checked": self.checked, "mismatches": [m.as_dict() for m in self.mismatches],
                "chunks": self.chunks, "rechecked": self.rechecked, "repaired": self.repaired,
                "error": self.error}


@dataclass
class ValidationReport:
    lsn: str
    mode: str
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0
    replica_reached: str = ""  # "applied" or "idle" (see validators/waiting.py)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return all(t.clean for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {"lsn": self.lsn, "mode": self.mode, "clean": self.clean,
                "tables": [t.as_dict() for t in self.tables], "seconds": round(self.seconds, 3),
                "replica_reached": self.replica_reached, "repaired": self.repaired}


def _status(t: TableResult) -> str:
    if t.error:
        return "error"
    return "ok" if t.clean else f"{len(t.mismatches)} mismatch(es)" if t.mismatches else "count differs"


def render_markdown(report: ValidationReport) -> str:
    lines = [f"## pg2edge validation ({report.mode}) at LSN {report.lsn}: "
             f"{'clean' if report.clean else 'MISMATCHES'}", "",
             "| table | source rows | replica rows | checked | status | repaired |", "|---|---:|---:|---:|---|---:|"]
    for t in report.tables:
        lines.append(f"| {t.table} | {t.source_rows} | {t.replica_rows} | {t.checked} | {_status(t)} | "
                     f"{t.repaired} |")
    for t in report.tables:
        if t.error:
            lines += ["", f"**{t.table}**: {t.error}"]
        if t.mismatches:
            lines += ["", f"### {t.table}", ""]
            lines += [f"- {m.describe()}".replace("|", "\\|") for m in t.mismatches]
    return "\n".join(lines) + "\n"


def render_table(report: ValidationReport) -> str:

    table = Table(title=f"validation ({report.mode}) at LSN {report.lsn}: "
                        f"{'clean' if report.clean else 'MISMATCHES'}")
    for name in ("table", "source rows", "replica rows", "checked", "status", "repaired"):
        table.add_column(name, justify="right" if "rows" in name or name in ("checked", "repaired") else "left")
    for t in report.tables:
        table.add_row(t.table, str(t.source_rows), str(t.replica_rows), str(t.checked), _status(t), str(t.repaired))
    console = Console(record=True, width=120, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        for t in report.tables:
            if t.error:
                console.print(f"{t.table}: {t.error}", markup=False)
            for m in t.mismatches:
                console.print(f"{t.table}: {m.describe()}", markup=False)
    return capture.get()


def render(report: ValidationReport, fmt: str = "table") -> str:
    """``table`` (rich), ``json`` (the contract of ``as_dict``) or ``markdown`` (Prefect artifact)."""
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "table":
        return render_table(report)
    raise ValueError(f"unknown report format {fmt!r} (table, json, markdown)")
