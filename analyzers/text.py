"""Words shared by every report view (terminal, Markdown, HTML): ratios, sizes and the summary lines."""

from __future__ import annotations

import math

from pg2edge.analyzers.model import AnalysisReport, TableReport


def ratio_text(t: TableReport) -> str:
    ratio = t.ratio
    if ratio is None:
        return "-"
    if math.isinf(ratio):
        return "inf (no writes)"
    return f"{ratio:,.2f}:1" if ratio < 100 else f"{ratio:,.0f}:1"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def summary_lines(report: AnalysisReport) -> list[str]:
    s = report.summary
    share = "n/a" if s.read_share is None else f"{s.read_share:.1%}"
    return [
        f"Reads are {share} of all table traffic (> 80%: {'yes' if s.read_heavy else 'no'}).",
        f"Candidate data: {human_bytes(s.candidate_bytes)} of {human_bytes(s.total_bytes)} "
        f"(< 50 GB: {'yes' if s.fits_dataset_limit else 'no'}).",
        "Verdicts: " + ", ".join(f"{k} {v}" for k, v in s.verdicts.items() if v),
        f"Recommendation: {s.recommendation}",
        *s.notes,
    ]
