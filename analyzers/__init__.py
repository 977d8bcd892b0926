"""Phase 1: rank tables by read/write ratio, find blockers, recommend.

Public API: :func:`analyze` (returns an :class:`AnalysisReport`) and
:func:`render` (table, json, markdown, html).
"""

from pg2edge.analyzers.core import analyze
from pg2edge.analyzers.model import AnalysisReport, Issue, TableReport
from pg2edge.analyzers.report import FORMATS, render

__all__ = ["FORMATS", "AnalysisReport", "Issue", "TableReport", "analyze", "render"]
