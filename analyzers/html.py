"""A self-contained HTML report: inline CSS and an inline SVG chart (reads vs writes, log scale)."""

from __future__ import annotations

import html
import math

from pg2edge.analyzers.model import AnalysisReport
from pg2edge.analyzers.text import human_bytes, ratio_text, summary_lines

COLORS = {"excellent": "#1a7f37", "good": "#4ac26b", "maybe": "#d4a72c", "keep": "#cf222e", "idle": "#8c959f"}
ROW_H, BAR_H, LABEL_W, PLOT_W = 34, 12, 190, 560


def _bar_width(value: int, top: float) -> float:
    if value <= 0:
        return 0.0
    return max(2.0, PLOT_W * math.log10(value + 1) / top)


def chart_svg(report: AnalysisReport) -> str:
    """Horizontal bars per table: reads (solid, verdict colour) over writes (hatched outline)."""
    top = max([math.log10(max(t.reads, t.writes) + 1) for t in report.tables] + [1.0])
    height = ROW_H * len(report.tables) + 50
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + PLOT_W + 80}" '
             f'height="{height}" role="img" aria-label="reads and writes per table, log scale">']
    for decade in range(0, int(math.ceil(top)) + 1):
        x = LABEL_W + PLOT_W * decade / top
        if x <= LABEL_W + PLOT_W + 1:
            parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 30}" class="grid"/>'
                         f'<text x="{x:.1f}" y="{height - 14}" class="axis">1e{decade}</text>')
    for i, t in enumerate(report.tables):
        y = 14 + i * ROW_H
        color = COLORS[t.verdict]
        name = html.escape(t.qualified)
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H}" class="label">{name}</text>')
        parts.append(f'<rect class="bar reads" data-table="{name}" data-verdict="{t.verdict}" x="{LABEL_W}" '
                     f'y="{y}" width="{_bar_width(t.reads, top):.1f}" height="{BAR_H}" fill="{color}">'
                     f'<title>{name}: {t.reads:,} reads</title></rect>')
        parts.append(f'<rect class="bar writes" data-table="{name}" x="{LABEL_W}" y="{y + BAR_H + 2}" '
                     f'width="{_bar_width(t.writes, top):.1f}" height="{BAR_H - 4}" fill="none" stroke="{color}">'
                     f'<title>{name}: {t.writes:,} writes</title></rect>')
    parts.append(f'<text x="{LABEL_W}" y="{height - 2}" class="axis">reads (solid) and writes (outline), '
                 'log scale; colour = verdict</text></svg>')
    return "".join(parts)


def as_html(report: AnalysisReport) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(t.qualified)}</td><td>{t.reads:,}</td><td>{t.writes:,}</td>"
        f"<td>{html.escape(ratio_text(t))}</td><td class='v-{t.verdict}'>{t.verdict}</td><td>{t.rows:,}</td>"
        f"<td style='white-space:nowrap'>{human_bytes(t.bytes)}</td>"
        f"<td>{html.escape(', '.join(dict.fromkeys(b.code for b in t.blockers)))}</td>"
        f"<td>{html.escape(', '.join(dict.fromkeys(w.code for w in t.warnings)))}</td></tr>"
        for t in report.tables)
    legend = "".join(f'<span class="chip" style="background:{c}"></span>{v} ' for v, c in COLORS.items())
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(report))
    verdict_css = "".join(f".v-{v}{{color:{c};font-weight:600}}" for v, c in COLORS.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pg2edge analyze: {html.escape(report.database)}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2328}}
table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #d0d7de;text-align:right}}
td:first-child,th:first-child{{text-align:left}}
.chart .label{{text-anchor:end;font-size:12px}}.chart .axis{{font-size:11px;fill:#57606a}}
.chart .grid{{stroke:#eaeef2}}.chip{{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}}
{verdict_css}
</style></head><body>
<h1>pg2edge analyze: {html.escape(report.database)}</h1>
<p>Generated {html.escape(report.generated_at)}; window {report.window_seconds:g} s; target profile
{html.escape(report.target_profile)}.</p>
<h2>Reads vs writes per table</h2><div>{legend}</div>
{chart_svg(report)}
<h2>Tables</h2>
<table><thead><tr><th>table</th><th>reads</th><th>writes</th><th>ratio</th><th>verdict</th><th>rows</th>
<th>size</th><th>blockers</th><th>warnings</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Summary</h2><ul>{summary}</ul>
</body></html>
"""
