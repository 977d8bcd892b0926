"""Phase 1: rank tables by read/write ratio, find blockers, recommend.

Public API: :func:`analyze` (returns an :class:`AnalysisReport`) and
:func:`render` (table, json, markdown, html).
"""

from analyzers.core import analyze
from analyzers.model import AnalysisReport, Issue, TableReport
from analyzers.report import FORMATS, render

__all__ = ["FORMATS", "AnalysisReport", "Issue", "TableReport", "analyze", "render"]
