"""Phase 3: validate a replica against its source at a known LSN (counts, samples, full checksums) and repair."""

from __future__ import annotations

from pg2edge.validators.report import Mismatch, TableResult, ValidationReport, render
from pg2edge.validators.run import validate

__all__ = ["Mismatch", "TableResult", "ValidationReport", "render", "validate"]
