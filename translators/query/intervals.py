"""Date and time arithmetic with PostgreSQL's answers on the codec's storage (UTC text).

Inside a translated query an interval is a number of seconds (REAL);
comparisons with interval literals count a month as 30 days, as PostgreSQL's
interval comparison does. ``ts - ts`` is exact to the microsecond (whole
seconds from ``unixepoch`` plus the stored fraction), ``date - date`` is whole
days, ``n * interval`` scales, ``avg/min/max/sum`` aggregate seconds, and
``extract(epoch from ...)`` is the seconds. An interval that is a result
column of the statement is printed the way the codec stores intervals
(ISO-8601 duration, days and time as PostgreSQL's ``justify_hours`` gives
them); one that leaves a subquery as seconds is a finding.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.query import temporal
from pg2edge.translators.query.infer import KIND, TypeContext, column_pg_type, kind_of
from pg2edge.translators.query.tree import Rewrite, as_integer, call, excerpt, number, paren, string

_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "months": 30 * 86400, "years": 360 * 86400}
_COMPARE = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)

_ISO_TEMPLATE = """
CASE WHEN __s IS NULL THEN NULL WHEN __u = 0 THEN 'PT0S' ELSE
 'P' || IIF(__u >= 86400000000, __g || (__u / 86400000000) || 'D', '')
 || IIF(__u % 86400000000 > 0, 'T'
   || IIF(__u / 3600000000 % 24 > 0, __g || (__u / 3600000000 % 24) || 'H', '')
   || IIF(__u / 60000000 % 60 > 0, __g || (__u / 60000000 % 60) || 'M', '')
   || IIF(__u % 60000000 > 0, __g || (__u / 1000000 % 60)
        || IIF(__u % 1000000 > 0, RTRIM(PRINTF('.%06d', __u % 1000000), '0'), '') || 'S', ''), '')
END"""


def mark(node: exp.Expression, kind: str) -> exp.Expression:
    node.meta[KIND] = kind
    return node


def epoch_seconds(value: exp.Expression) -> exp.Expression:
    """Exact seconds since 1970 of a stored timestamp text.

    SQLite reads a fraction of a second to the millisecond, rounding (``:05.999999`` is ``:06``), so the
    whole seconds come from the text without its fraction and the fraction from the text itself."""
    whole = call("unixepoch", call("substr", value.copy(), number(1), number(19)))
    fraction = exp.Cast(this=call("substr", value.copy(), number(20)), to=exp.DataType.build("REAL"))
    return paren(exp.Add(this=whole, expression=fraction))


def literal_seconds(node: exp.Expression) -> float | None:
    """Seconds of an interval literal (30-day months, 360-day years, as PostgreSQL compares intervals)."""
    mods = temporal.interval_modifiers(node)
    if mods is None:
        return None
    total = 0.0
    for mod in mods:
        amount, unit = mod.split()
        total += float(amount) * _SECONDS[unit]
    return total


def _seconds_literal(node: exp.Expression) -> exp.Expression | None:
    seconds = literal_seconds(node)
    if seconds is None:
        return None
    return number(int(seconds) if seconds == int(seconds) else seconds)


def iso_duration(seconds: exp.Expression) -> exp.Expression:
    """SQL text of ``seconds`` as the codec's ISO-8601 duration ('P1DT2H30M', 'PT0.5S', 'P-1DT-2H')."""
    micro = as_integer(call("round", exp.Mul(this=call("abs", seconds.copy()), expression=number(1000000))))
    sign = exp.If(this=exp.LT(this=seconds.copy(), expression=number(0)), true=string("-"), false=string(""))
    template = sqlglot.parse_one(_ISO_TEMPLATE, read="sqlite")

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table:
            return {"__s": seconds, "__u": micro, "__g": sign}.get(node.name, node).copy()
        return node

    return paren(template.transform(fill))


def _as_seconds(node: exp.Expression, context: TypeContext) -> exp.Expression | None:
    """``node`` as seconds when it is an interval (computed) or an interval literal, else None."""
    kind = kind_of(node, context)
    if kind == "interval":
        return node
    if kind == "interval_literal":
        return _seconds_literal(node)
    return None


def _real(node: exp.Expression) -> exp.Expression:
    return exp.Mul(this=node, expression=number(1.0))


def _datetime_plus(base: exp.Expression, seconds: exp.Expression, *, negate: bool) -> exp.Expression:
    """``base`` shifted by ``seconds``, exact to the microsecond, in the stored text format."""
    amount = exp.Neg(this=paren(seconds)) if negate else seconds
    total = exp.Add(this=epoch_seconds(base), expression=paren(amount))
    micro = as_integer(call("round", exp.Mul(this=paren(total), expression=number(1000000))))
    # integer division: datetime() would round a REAL's fraction to the millisecond
    whole = call("datetime", exp.Div(this=micro.copy(), expression=number(1000000), typed=True), string("unixepoch"))
    rest = exp.Mod(this=micro.copy(), expression=number(1000000))
    fraction = exp.If(this=exp.GT(this=rest.copy(), expression=number(0)),
                      true=call("rtrim", call("printf", string(".%06d"), rest), string("0")), false=string(""))
    return paren(exp.DPipe(this=whole, expression=fraction))


def temporal_arithmetic(context: TypeContext, found: list[Finding]) -> Rewrite:
    """Build the rewrite (it needs the column types to know which operands are timestamps, dates, intervals)."""

    def note(level: Level, code: str, node: exp.Expression, message: str) -> None:
        finding = Finding(level, code, excerpt(node), message)
        if finding not in found:
            found.append(finding)

    def arithmetic(node: exp.Expression) -> exp.Expression | None:
        left, right = node.this, node.expression
        lk, rk = kind_of(left, context), kind_of(right, context)
        if "interval_text" in (lk, rk):
            note(Level.ERROR, "interval_column", node,
                 "an interval column is stored as ISO-8601 text: SQLite has no arithmetic on it")
            return None
        if isinstance(node, exp.Sub) and lk in ("timestamp", "date") and rk in ("timestamp", "date"):
            if lk == rk == "date":  # date - date: whole days (an integer)
                days = exp.Sub(this=call("julianday", left.copy()), expression=call("julianday", right.copy()))
                return as_integer(days)
            return mark(paren(exp.Sub(this=epoch_seconds(left), expression=epoch_seconds(right))), "interval")
        if isinstance(node, (exp.Add, exp.Sub)):
            if lk == "date" and rk is None and isinstance(left, exp.Column) and _is_integer(right, context):  # date +- integer: a date
                return mark(call("date", left.copy(), _days(right, negate=isinstance(node, exp.Sub))), "date")
            if isinstance(node, exp.Add) and rk == "date" and lk is None and isinstance(right, exp.Column) and \
                    _is_integer(left, context):
                return mark(call("date", right.copy(), _days(left, negate=False)), "date")
            if lk == "timestamp" and rk == "interval":
                return mark(_datetime_plus(left, right, negate=isinstance(node, exp.Sub)), "timestamp")
            if isinstance(node, exp.Add) and rk == "timestamp" and lk == "interval":
                return mark(_datetime_plus(right, left, negate=False), "timestamp")
            if "interval" in (lk, rk) and {lk, rk} <= {"interval", "interval_literal"}:
                a, b = _as_seconds(left, context), _as_seconds(right, context)
                if a is not None and b is not None:
                    return mark(paren(node.__class__(this=a.copy(), expression=b.copy())), "interval")
        if isinstance(node, exp.Mul):
            for scale, interval in ((left, right), (right, left)):
                seconds = _as_seconds(interval, context)
                if seconds is not None and kind_of(scale, context) not in ("interval", "interval_literal"):
                    return mark(paren(exp.Mul(this=scale.copy(), expression=_real(seconds.copy()))), "interval")
        if isinstance(node, exp.Div) and lk == "interval":
            return mark(paren(exp.Div(this=_real(left.copy()), expression=right.copy())), "interval")
        return None

    def compare(node: exp.Expression) -> exp.Expression | None:
        sides = [node.this, node.expression] if isinstance(node, _COMPARE) else \
            [node.this, node.args.get("low"), node.args.get("high")]
        kinds = [kind_of(s, context) for s in sides]
        if "interval" not in kinds:
            if "interval_text" in kinds and "interval_literal" in kinds:
                note(Level.ERROR, "interval_column", node,
                     "an interval column is stored as ISO-8601 text: SQLite cannot compare it with an interval")
            return None
        converted = [_as_seconds(s, context) if k in ("interval", "interval_literal") else s
                     for s, k in zip(sides, kinds)]
        if any(c is None for c in converted):
            return None
        out = node.copy()
        keys = ["this", "expression"] if isinstance(node, _COMPARE) else ["this", "low", "high"]
        for key, value in zip(keys, converted):
            assert value is not None
            out.set(key, value.copy())
        return out

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            out = arithmetic(node)
            return out if out is not None else node
        if isinstance(node, (*_COMPARE, exp.Between)):
            out = compare(node)
            return out if out is not None else node
        if isinstance(node, exp.Paren) and kind_of(node.this, context) == "interval":
            return mark(node, "interval")
        if isinstance(node, exp.Neg) and kind_of(node.this, context) == "interval":
            return mark(node, "interval")
        if isinstance(node, (exp.Avg, exp.Min, exp.Max, exp.Sum)) and kind_of(node.this, context) == "interval":
            return mark(node, "interval")
        if isinstance(node, (exp.Avg, exp.Min, exp.Max, exp.Sum, exp.Ordered)) and \
                kind_of(node.this, context) == "interval_text":
            note(Level.ERROR, "interval_column", node,
                 "an interval column is stored as ISO-8601 text: SQLite cannot order or aggregate it as a duration")
        if isinstance(node, exp.Extract) and (str(node.this.name).upper() == "EPOCH"):
            value = node.expression
            kind = kind_of(value, context)
            if kind == "interval":
                seconds = value.copy()
                seconds.meta.pop(KIND, None)  # a number now, not an interval to print
                return seconds
            if kind == "interval_literal":
                seconds = _seconds_literal(value)
                return seconds if seconds is not None else node
            if kind is None and isinstance(value, exp.Sub):  # untyped a - b: taken as timestamps
                return paren(exp.Sub(this=epoch_seconds(value.this), expression=epoch_seconds(value.expression)))
            if kind in ("timestamp", "date", None):
                return epoch_seconds(value)
        if isinstance(node, exp.Select):
            return _format_outputs(node)
        return node

    def _format_outputs(select: exp.Select) -> exp.Select:
        intervals = [(i, e) for i, e in enumerate(select.expressions) if kind_of(e.unalias(), context) == "interval"]
        if not intervals:
            return select
        if not _is_result(select):
            for _, e in intervals:
                note(Level.WARN, "interval_seconds", e,
                     "an interval leaving a subquery is a number of seconds on SQLite, not an interval")
            return select
        out = select.copy()
        seconds_by_name: dict[str, exp.Expression] = {}
        for i, _e in intervals:
            projection = out.expressions[i]
            inner = projection.unalias()
            seconds_by_name[projection.alias_or_name] = inner.copy()
            seconds_by_name[str(i + 1)] = inner.copy()
            formatted = iso_duration(inner)
            out.expressions[i].replace(exp.alias_(formatted, _output_name(projection), quoted=True))
        order = out.args.get("order")
        for ordered in order.expressions if order else ():
            key = ordered.this
            ref = key.name if isinstance(key, exp.Column) and not key.table else (
                str(key.this) if isinstance(key, exp.Literal) and key.is_int else None)
            if ref is not None and ref in seconds_by_name:
                ordered.set("this", seconds_by_name[ref].copy())
        return out

    rewrite.__name__ = "temporal_arithmetic"
    return rewrite


def _output_name(projection: exp.Expression) -> str:
    """PostgreSQL's name for a result column: its alias, column name, function name, else ?column?."""
    if isinstance(projection, exp.Alias):
        return projection.alias
    inner = projection.unnest()
    if isinstance(inner, exp.Column):
        return inner.name
    if isinstance(inner, exp.Func):
        return str(inner.sql_name()).lower() if not isinstance(inner, exp.Anonymous) else str(inner.this).lower()
    return "?column?"


def _is_integer(node: exp.Expression, context: TypeContext) -> bool:
    """An integer literal or a column of an integer type."""
    if isinstance(node, exp.Literal):
        return not node.is_string and node.is_int
    if isinstance(node, exp.Column):
        pg_type = column_pg_type(node, context) or ""
        return pg_type.startswith(("integer", "smallint", "bigint"))
    return False


def _days(amount: exp.Expression, *, negate: bool) -> exp.Expression:
    """An SQLite date modifier of ``amount`` days ('+7 days', or ``(-(n) || ' days')``)."""
    if isinstance(amount, exp.Literal):
        days = -int(amount.this) if negate else int(amount.this)
        return string(f"{'+' if days >= 0 else ''}{days} days")
    value = exp.Neg(this=paren(amount.copy())) if negate else paren(amount.copy())
    return exp.DPipe(this=value, expression=string(" days"))


def _is_result(select: exp.Select) -> bool:
    """The statement's own result rows (not a subquery, CTE or derived table)."""
    node: exp.Expr | None = select.parent
    while isinstance(node, (exp.Union, exp.Except, exp.Intersect)):
        node = node.parent
    return node is None or isinstance(node, exp.Create)
