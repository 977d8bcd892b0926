"""What PostgreSQL type an expression has, as far as the query translator needs to know.

The translator knows column types (``table -> column -> format_type()``) and
enum labels from the source catalog or from what the replica recorded. Kinds
are coarse: ``timestamp``, ``date``, ``interval``, ``numeric``, ``bpchar``,
``enum``; anything else is ``None`` (no special rule). Rewrites that replace a
node record the kind of the new node in ``node.meta["pg_kind"]`` so an
enclosing expression still knows it (the pass runs children first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pg2edge.translators.query import columns

KIND = "pg_kind"
T = exp.DataType.Type
_TS_TYPES = {T.TIMESTAMP, T.TIMESTAMPTZ, T.TIMESTAMPLTZ, T.TIMESTAMPNTZ}


@dataclass(frozen=True)
class TypeContext:
    """Column types and enum labels (type name, unqualified and lower-case -> labels in declaration order)."""

    columns: columns.ColumnTypes = field(default_factory=dict)
    enums: Mapping[str, Sequence[str]] = field(default_factory=dict)
    fts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # table -> FTS5 index (translators/fts.py)

    def enum_labels(self, pg_type: str) -> tuple[str, ...] | None:
        name = pg_type.strip().lower().split(".")[-1].strip('"')
        labels = self.enums.get(name)
        return tuple(labels) if labels is not None else None


def kind_of_type(pg_type: str, context: TypeContext) -> str | None:
    """Coarse kind of a ``format_type()`` string."""
    t = pg_type.strip().lower()
    if t.endswith("]"):
        return None
    if t.startswith("timestamp"):
        return "timestamp"
    if t == "date":
        return "date"
    if t.startswith("interval"):
        return "interval_text"  # a stored interval: ISO-8601 text, opaque to arithmetic
    if columns.is_numeric_type(t):
        return "numeric"
    if t.startswith(("character(", "bpchar", "char(")) or t in ("character", "char"):
        return "bpchar"
    if context.enum_labels(t) is not None:
        return "enum"
    return None


def column_pg_type(node: exp.Column, context: TypeContext) -> str | None:
    return columns.column_type(node, context.columns) if context.columns else None


def kind_of(node: exp.Expression | None, context: TypeContext) -> str | None:
    """The kind of ``node`` (a PostgreSQL expression, or one this pass already rewrote)."""
    if node is None:
        return None
    recorded = node.meta.get(KIND) if node._meta else None  # noqa: SLF001 - avoid creating meta dicts
    if recorded is not None:
        return str(recorded)
    if isinstance(node, exp.Paren):
        return kind_of(node.this, context)
    if isinstance(node, exp.Column):
        pg_type = column_pg_type(node, context)
        return kind_of_type(pg_type, context) if pg_type else None
    if isinstance(node, exp.CurrentTimestamp) or (
            isinstance(node, exp.Anonymous) and str(node.this).lower() in ("now", "localtimestamp")):
        return "timestamp"
    if isinstance(node, exp.CurrentDate):
        return "date"
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        return "timestamp"
    if isinstance(node, exp.Cast):
        if node.to.this in _TS_TYPES:
            return "timestamp"
        if node.to.this == T.DATE:
            return "date"
        if node.to.this == T.INTERVAL:
            return "interval_literal" if isinstance(node.this, exp.Literal) else None
        return None
    if isinstance(node, exp.Interval):
        return "interval_literal"
    if isinstance(node, (exp.Add, exp.Sub)):
        left, right = kind_of(node.this, context), kind_of(node.expression, context)
        if left == "timestamp" and right in ("interval_literal", "interval"):
            return "timestamp"
        if isinstance(node, exp.Add) and right == "timestamp" and left in ("interval_literal", "interval"):
            return "timestamp"
        if left == "date" and right in ("interval_literal", "interval"):
            return "timestamp"
    return None


def enum_labels_of(node: exp.Expression, context: TypeContext) -> tuple[str, ...] | None:
    if isinstance(node, exp.Column):
        pg_type = column_pg_type(node, context)
        return context.enum_labels(pg_type) if pg_type else None
    return None
