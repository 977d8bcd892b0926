"""The cutover checklist's result model and its renderings (table, json, markdown)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Status = Literal["PASS", "FAIL", "WARN"]
PASS: Status = "PASS"
FAIL: Status = "FAIL"
WARN: Status = "WARN"


@dataclass
class Gate:
    """One checklist gate: what was measured against which threshold, and why it passed or not."""

    name: str
    status: Status
    measured: str = ""
    threshold: str = ""
    detail: str = ""


@dataclass
class Checklist:
    source: str
    target: str
    gates: list[Gate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no gate FAILed (a WARN does not block the cutover)."""
        return all(g.status != FAIL for g in self.gates)

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if g.status == FAIL]

    def gate(self, name: str) -> Gate:
        for g in self.gates:
            if g.name == name:
                return g
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "ok": self.ok,
                "gates": [asdict(g) for g in self.gates]}


def _verdict(checklist: Checklist) -> str:
    if checklist.ok:
        return "ready to cut over" if all(g.status == PASS for g in checklist.gates) else "ready (with warnings)"
    return "NOT ready: " + ", ".join(g.name for g in checklist.failed) + " failed"


def render_markdown(checklist: Checklist) -> str:
    lines = [f"## pg2edge cutover checklist: {_verdict(checklist)}", "",
             "| gate | status | measured | threshold | detail |", "|---|---|---|---|---|"]
    for g in checklist.gates:
        cells = [g.name, g.status, g.measured, g.threshold, g.detail]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_table(checklist: Checklist, *, width: int = 140) -> str:

    table = Table(title=f"cutover checklist for {checklist.target}: {_verdict(checklist)}")
    for name in ("gate", "status", "measured", "threshold", "detail"):
        table.add_column(name, overflow="fold")
    for g in checklist.gates:
        table.add_row(g.name, g.status, g.measured, g.threshold, g.detail)
    console = Console(record=True, width=width, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def render(checklist: Checklist, fmt: str = "table", *, width: int = 140) -> str:
    """``table`` (rich), ``json`` (``as_dict``) or ``markdown`` (Prefect artifact)."""
    if fmt == "json":
        return json.dumps(checklist.as_dict(), indent=2)
    if fmt == "markdown":
        return render_markdown(checklist)
    return render_table(checklist, width=width)
