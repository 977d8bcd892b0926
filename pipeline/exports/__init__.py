"""Edge exports of a replica: a clean SQLite file for Turso, an SQL script for Cloudflare D1."""

from __future__ import annotations

from pg2edge.pipeline.exports.d1 import D1_STATEMENT_LIMIT, export_d1
from pg2edge.pipeline.exports.errors import ExportError, RowTooLargeError
from pg2edge.pipeline.exports.result import ExportResult
from pg2edge.pipeline.exports.turso import export_turso

__all__ = ["D1_STATEMENT_LIMIT", "ExportError", "ExportResult", "RowTooLargeError", "export_d1", "export_turso"]
