"""Render an AnalysisReport: rich table (default), JSON, Markdown, HTML."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table

from pg2edge.analyzers.html import as_html
from pg2edge.analyzers.model import AnalysisReport, TableReport
from pg2edge.analyzers.text import human_bytes, ratio_text, summary_lines

FORMATS = ("table", "json", "markdown", "html")
VERDICT_STYLE = {"excellent": "bold green", "good": "green", "maybe": "yellow", "keep": "red", "idle": "dim"}


def _issues(t: TableReport) -> str:
    codes = [b.code for b in t.blockers] + [f"({w.code})" for w in t.warnings]
    return ", ".join(dict.fromkeys(codes))


def rich_table(report: AnalysisReport) -> Table:
    scope = f"{report.window_seconds:g} s window" if report.window_seconds else f"since {report.stats_reset or 'start'}"
    table = Table(title=f"pg2edge analyze: {report.database} ({scope}, target {report.target_profile})")
    for col in ("table", "reads", "writes", "ratio", "reads/day", "rows", "size", "verdict", "blockers (warnings)"):
        table.add_column(col, justify="right" if col in ("reads", "writes", "ratio", "reads/day", "rows", "size")
                         else "left")
    for t in report.tables:
        table.add_row(t.qualified, f"{t.reads:,}", f"{t.writes:,}", ratio_text(t), f"{t.reads_per_day:,.0f}",
                      f"{t.rows:,}", human_bytes(t.bytes), f"[{VERDICT_STYLE[t.verdict]}]{t.verdict}[/]", _issues(t))
    return table


def print_report(report: AnalysisReport, console: Console) -> None:
    """The terminal view: the table, each blocker in full, then the summary."""
    console.print(rich_table(report))
    for t in report.tables:
        for issue in t.blockers:
            console.print(f"[red]blocker[/] {issue.code}: {issue.message}", highlight=False)
    for line in summary_lines(report):
        console.print(line, highlight=False)


def as_text(report: AnalysisReport, *, width: int = 150) -> str:
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def as_markdown(report: AnalysisReport) -> str:
    lines = [f"# pg2edge analyze: {report.database}", "",
             f"Generated {report.generated_at}; statistics reset {report.stats_reset or 'n/a'}; "
             f"window {report.window_seconds:g} s; target profile {report.target_profile}.", "",
             "| table | reads | writes | ratio | verdict | rows | size | blockers | warnings |",
             "|---|---:|---:|---:|---|---:|---:|---|---|"]
    for t in report.tables:
        lines.append(f"| {t.qualified} | {t.reads:,} | {t.writes:,} | {ratio_text(t)} | {t.verdict} | {t.rows:,} | "
                     f"{human_bytes(t.bytes)} | {', '.join(dict.fromkeys(b.code for b in t.blockers))} | "
                     f"{', '.join(dict.fromkeys(w.code for w in t.warnings))} |")
    lines += ["", "## Summary", ""] + [f"- {line}" for line in summary_lines(report)]
    details = [f"- **{t.qualified}** `{i.code}`: {i.message}" for t in report.tables for i in t.blockers]
    if details:
        lines += ["", "## Blockers", "", *details]
    return "\n".join(lines) + "\n"


def render(report: AnalysisReport, fmt: str) -> str:
    """The report as text in ``fmt`` (table, json, markdown or html)."""
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    if fmt == "markdown":
        return as_markdown(report)
    if fmt == "html":

        return as_html(report)
    if fmt == "table":
        return as_text(report)
    raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
