"""Exact sums of numeric(p, s) columns (stored as exact text): sum the scaled integers, not doubles.

``sum(amount)`` over ``numeric(6,2)`` becomes ``sum(CAST(round(CAST(amount AS REAL) * 100) AS INTEGER))``
(exact: a value of at most 15 digits is the nearest double, and rounding its scaled value gives the
integer back). Inside the query that sum is used as ``scaled / 100.0``; as a result column it is printed
as PostgreSQL prints the numeric ('1234.50'), the text the codec stores numerics as. Precision above 15
digits, or an unknown scale, keeps the REAL reading (info ``numeric_as_real``).
"""

from __future__ import annotations

import re

from sqlglot import exp

from pg2edge.translators.findings import Finding
from pg2edge.translators.query import columns
from pg2edge.translators.query.infer import KIND, TypeContext
from pg2edge.translators.query.tree import Rewrite, as_integer, call, number, paren, string

_TYPMOD = re.compile(r"^\s*(?:numeric|decimal)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.IGNORECASE)
SCALED = "numeric_scaled"


def _scale(node: exp.Expression, context: TypeContext) -> int | None:
    """The scale of a numeric(p, s) column read as REAL (``CAST(col AS REAL)``), when p <= 15 and s > 0."""
    if not (isinstance(node, exp.Cast) and isinstance(node.this, exp.Column) and node.to.is_type("real")):
        return None
    pg_type = columns.column_type(node.this, context.columns) if context.columns else None
    m = _TYPMOD.match(pg_type or "")
    if not m or int(m.group(1)) > 15 or int(m.group(2)) == 0:
        return None
    return int(m.group(2))


def exact_text(scaled: exp.Expression, scale: int) -> exp.Expression:
    """An integer count of 10^-scale units as PostgreSQL's numeric text ('-12.50')."""
    unit = number(10 ** scale)
    magnitude = call("abs", scaled.copy())
    sign = exp.If(this=exp.LT(this=scaled.copy(), expression=number(0)), true=string("-"), false=string(""))
    whole = paren(exp.Div(this=magnitude.copy(), expression=unit.copy(), typed=True))  # || binds tighter than /
    fraction = call("printf", string(f"%0{scale}d"), exp.Mod(this=magnitude, expression=unit))
    text = exp.DPipe(this=exp.DPipe(this=exp.DPipe(this=sign, expression=whole), expression=string(".")),
                     expression=fraction)
    return exp.Case(ifs=[exp.If(this=exp.Is(this=scaled.copy(), expression=exp.Null()), true=exp.Null())],
                    default=text)


def exact_numeric_sums(context: TypeContext, found: list[Finding]) -> Rewrite:
    """Build the rewrite (runs after ``numeric_columns_to_real``)."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Sum) and not isinstance(node.parent, (exp.Window, exp.Filter)):
            scale = _scale(node.this, context)
            if scale is not None:
                units = as_integer(call("round", exp.Mul(this=node.this.copy(), expression=number(10 ** scale))))
                scaled = exp.Sum(this=units)
                value = paren(exp.Div(this=scaled.copy(), expression=number(float(10 ** scale))))
                value.meta[KIND] = SCALED
                value.meta["scale"] = scale
                return value
        if isinstance(node, exp.Select):
            return _print_results(node)
        return node

    rewrite.__name__ = "exact_numeric_sums"
    return rewrite


def _scaled_parts(node: exp.Expression) -> tuple[exp.Expression, int] | None:
    if node._meta and node.meta.get(KIND) == SCALED:  # noqa: SLF001 - avoid creating meta dicts
        div = node.this
        return div.this, int(node.meta["scale"])
    return None


def _print_results(select: exp.Select) -> exp.Select:
    from pg2edge.translators.query.intervals import _is_result

    found = [(i, parts) for i, e in enumerate(select.expressions) if (parts := _scaled_parts(e.unalias()))]
    if not found or not _is_result(select):
        return select
    out = select.copy()
    by_name: dict[str, exp.Expression] = {}
    for i, (scaled, scale) in found:
        projection = out.expressions[i]
        value = projection.unalias().copy()
        by_name[projection.alias_or_name] = value
        by_name[str(i + 1)] = value
        name = projection.alias if isinstance(projection, exp.Alias) else "sum"  # PostgreSQL's column name
        out.expressions[i].replace(exp.alias_(exact_text(scaled, scale), name, quoted=True))
    order = out.args.get("order")
    for ordered in order.expressions if order else ():
        key = ordered.this
        ref = key.name if isinstance(key, exp.Column) and not key.table else (
            str(key.this) if isinstance(key, exp.Literal) and key.is_int else None)
        if ref is not None and ref in by_name:
            ordered.set("this", by_name[ref].copy())
    return out
