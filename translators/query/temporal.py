"""Date and time rewrites: values are stored as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'.

Every expression built here yields that same format (``datetime(...)``,
``strftime('%Y-%m-%d %H:%M:%S', ...)``) or a date 'YYYY-MM-DD', so results
compare and sort correctly against stored values as text.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlglot import exp

from pg2edge.translators.query.tree import as_integer, call, literal_text, number, paren, string

UTC_ZONES = frozenset({"utc", "etc/utc", "gmt", "etc/gmt", "z", "uct", "zulu", "+00", "+00:00", "00:00"})

_UNITS = {
    "microsecond": None, "microseconds": None, "millisecond": None, "milliseconds": None,
    "second": "seconds", "seconds": "seconds", "sec": "seconds", "secs": "seconds", "s": "seconds",
    "minute": "minutes", "minutes": "minutes", "min": "minutes", "mins": "minutes", "m": "minutes",
    "hour": "hours", "hours": "hours", "hr": "hours", "hrs": "hours", "h": "hours",
    "day": "days", "days": "days", "d": "days",
    "week": "weeks", "weeks": "weeks", "w": "weeks",
    "month": "months", "months": "months", "mon": "months", "mons": "months",
    "year": "years", "years": "years", "yr": "years", "yrs": "years", "y": "years",
}
_PART = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*")


def interval_modifiers(node: exp.Expression, *, negate: bool = False) -> list[str] | None:
    """``interval '1 day 2 hours'`` -> ['+1 days', '+2 hours'] (SQLite modifiers), or None."""
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.INTERVAL):
        text = literal_text(node.this)
    elif isinstance(node, exp.Interval):
        value, unit = literal_text(node.this), literal_text(node.args.get("unit"))
        text = f"{value} {unit}" if value is not None and unit else value
    else:
        return None
    if not text:
        return None
    mods: list[str] = []
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m or m.end() == pos:
            return None
        amount, unit = float(m.group(1)), _UNITS.get(m.group(2).lower(), "")
        if not unit:
            return None
        pos = m.end()
        if unit == "weeks":
            amount, unit = amount * 7, "days"
        amount = -amount if negate else amount
        shown = int(amount) if amount == int(amount) else amount
        mods.append(f"{'+' if amount >= 0 else ''}{shown} {unit}")
    return mods or None


def whole_seconds(value: exp.Expression) -> exp.Expression:
    """A stored timestamp without its fraction of a second (SQLite would round it to the millisecond)."""
    if isinstance(value, exp.Literal) or (isinstance(value, exp.Anonymous) and str(value.this).lower() == "substr"):
        return value
    return call("substr", value.copy(), number(1), number(19))


def clamp_months(value: exp.Expression, months: list[str]) -> exp.Expression:
    """``value`` plus month/year modifiers, where Jan 31 + 1 month is Feb 28/29 (PostgreSQL), not Mar 2/3 (SQLite)."""
    shifted = call("datetime", value.copy(), *[string(m) for m in months])
    same_day = exp.EQ(this=call("strftime", string("%d"), shifted.copy()),
                      expression=call("strftime", string("%d"), value.copy()))
    last_day = exp.DPipe(this=exp.DPipe(this=call("date", shifted.copy(), string("start of month"), string("-1 days")),
                                        expression=string(" ")), expression=call("time", shifted.copy()))
    return exp.Case(ifs=[exp.If(this=same_day, true=shifted)], default=last_day)


def keep_fraction(shifted: exp.Expression, base: exp.Expression) -> exp.Expression:
    """``datetime()`` drops the fraction of a second: append the stored one (``.52881``) again."""
    return exp.DPipe(this=shifted, expression=call("substr", base.copy(), number(20)))


def _kept_fraction(node: exp.Expression) -> tuple[exp.Expression, exp.Expression] | None:
    """The parts of ``keep_fraction(datetime(...), base)``, else None."""
    if isinstance(node, exp.DPipe) and isinstance(node.expression, exp.Anonymous) and \
            str(node.expression.this).lower() == "substr" and isinstance(node.this, exp.Anonymous) and \
            str(node.this.this).lower() == "datetime":
        return node.this, node.expression.expressions[0]
    return None


def _is_constant_time(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Literal, exp.CurrentTimestamp, exp.CurrentDate))


def _as_datetime_base(node: exp.Expression) -> tuple[exp.Expression, list[exp.Expression]]:
    """Split ``datetime(x, mods...)`` so new modifiers append; map now/current_date."""
    unnested = node.unnest()
    assert isinstance(unnested, exp.Expression)
    node = unnested
    kept = _kept_fraction(node)
    if kept is not None:
        node = kept[0]
        whole = node.expressions[0] if node.expressions else None
        if isinstance(whole, exp.Anonymous) and str(whole.this).lower() == "substr":  # datetime(substr(x, 1, 19), ...)
            return whole.expressions[0], list(node.expressions[1:])
    if isinstance(node, exp.Anonymous) and str(node.this).lower() == "datetime" and node.expressions:
        return node.expressions[0], list(node.expressions[1:])
    if isinstance(node, exp.CurrentTimestamp):
        return string("now"), []
    if isinstance(node, exp.CurrentDate):
        return string("now"), [string("start of day")]
    return node, []


def interval_arithmetic_to_datetime(node: exp.Expression) -> exp.Expression:
    """``ts + interval '1 day'`` -> ``datetime(ts, '+1 days')``; ``current_date + 7`` -> ``date('now', '+7 days')``."""
    if not isinstance(node, (exp.Add, exp.Sub)):
        return node
    left, right = node.this, node.expression
    if isinstance(node, exp.Add) and interval_modifiers(left) is not None:
        left, right = right, left
    mods = interval_modifiers(right, negate=isinstance(node, exp.Sub))
    if mods is not None:
        months = [m for m in mods if m.endswith(("months", "years"))]
        base, previous = _as_datetime_base(left.copy())
        whole = all(float(m.split()[0]).is_integer() for m in mods)
        truncated = any((literal_text(p) or "").startswith(("start of", "weekday")) for p in previous)
        if months:  # months first, clamped to the month's last day as PostgreSQL does; then the rest
            start = call("datetime", base, *previous) if previous else base
            start = start if _is_constant_time(base) or truncated else whole_seconds(start)
            shifted = clamp_months(start, months)
            rest = [string(m) for m in mods if m not in months]
            shifted = call("datetime", shifted, *rest) if rest else shifted
        elif _is_constant_time(base) or truncated:
            shifted = call("datetime", base, *previous, *[string(m) for m in mods])
        else:
            # SQLite rounds a stored fraction to the millisecond (':05.999999' -> ':06'): shift the whole
            # seconds, then append the stored fraction
            shifted = call("datetime", whole_seconds(base), *previous, *[string(m) for m in mods])
        if _is_constant_time(base) or not whole or truncated:
            return shifted
        return keep_fraction(shifted, base)
    if isinstance(right, exp.Literal) and not right.is_string and right.is_int:
        date_base = _date_operand(left)
        if date_base is not None:
            days = int(right.this) * (-1 if isinstance(node, exp.Sub) else 1)
            return call("date", date_base, string(f"{'+' if days >= 0 else ''}{days} days"))
    return node


def _date_operand(node: exp.Expression) -> exp.Expression | None:
    """The value of a date expression (``current_date``, ``x::date``, ``date(x)``), else None."""
    if isinstance(node, exp.CurrentDate):
        return string("now")
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE):
        return node.this.copy()
    if isinstance(node, exp.Anonymous) and str(node.this).lower() == "date" and node.expressions:
        return node.expressions[0].copy()
    return None


def at_time_zone_utc_to_value(node: exp.Expression) -> exp.Expression:
    """``x AT TIME ZONE 'UTC'`` -> ``x`` (values are stored in UTC); other zones stay (a finding)."""
    if isinstance(node, exp.AtTimeZone):
        zone = literal_text(node.args.get("zone"))
        if zone is not None and zone.lower() in UTC_ZONES:
            return node.this.copy()
    return node


_EXTRACT_FORMATS = {
    "YEAR": "%Y", "MONTH": "%m", "DAY": "%d", "HOUR": "%H", "MINUTE": "%M", "DOW": "%w",
    "DOY": "%j", "WEEK": "%V", "ISODOW": "%u", "ISOYEAR": "%G",
}


def extract_to_strftime(node: exp.Expression) -> exp.Expression:
    """``EXTRACT(part FROM x)`` -> ``CAST(strftime(fmt, x) AS INTEGER)``; EPOCH -> ``unixepoch(x, 'subsec')``."""
    if not isinstance(node, exp.Extract):
        return node
    part = (literal_text(node.this) or "").upper()
    value = node.expression.copy()
    if part == "EPOCH":
        if isinstance(value, exp.Sub):  # extract(epoch from a - b): an interval in seconds
            return paren(exp.Sub(this=call("unixepoch", value.this, string("subsec")),
                                 expression=call("unixepoch", value.expression, string("subsec"))))
        return call("unixepoch", value, string("subsec"))
    if part == "SECOND":  # whole seconds plus the stored fraction, exact
        fraction = exp.Cast(this=call("substr", value.copy(), number(20)), to=exp.DataType.build("REAL"))
        return paren(exp.Add(this=as_integer(call("strftime", string("%S"), whole_seconds(value))), expression=fraction))
    value = whole_seconds(value)
    if part == "QUARTER":
        month = as_integer(call("strftime", string("%m"), value))
        return paren(exp.Div(this=paren(exp.Add(this=month, expression=number(2))), expression=number(3), typed=True))
    fmt = _EXTRACT_FORMATS.get(part)
    return as_integer(call("strftime", string(fmt), value)) if fmt else node


def date_trunc_to_datetime(node: exp.Expression) -> exp.Expression:
    """``date_trunc('month', x)`` -> ``datetime(x, 'start of month')`` and friends."""
    if not isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        return node
    unit = (literal_text(node.args.get("unit")) or "").lower().rstrip("s")
    value = whole_seconds(node.this.copy())
    formats = {"second": "%Y-%m-%d %H:%M:%S", "minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00"}
    if unit in formats:
        return call("strftime", string(formats[unit]), value)
    starts = {"day": ["start of day"], "week": ["start of day", "-6 days", "weekday 1"],
              "month": ["start of month"], "year": ["start of year"]}
    if unit in starts:
        return call("datetime", value, *[string(m) for m in starts[unit]])
    if unit == "quarter":
        month = as_integer(call("strftime", string("%m"), value))
        back = exp.Mod(this=paren(exp.Sub(this=month, expression=number(1))), expression=number(3))
        return call("datetime", value.copy(), string("start of month"),
                    call("printf", string("-%d months"), back))
    return node


def format_timestamp(text: str) -> str | None:
    """A PostgreSQL timestamp literal as stored: UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]', or None."""
    raw = text.strip()
    if re.search(r"[+-]\d\d$", raw):
        raw += ":00"
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    # trailing zeros of the fraction dropped, as PostgreSQL prints it and the codec stores it ('.5')
    return value.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0") if value.microsecond else \
        value.strftime("%Y-%m-%d %H:%M:%S")


def format_date(text: str) -> str | None:
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        stamp = format_timestamp(text)
        return stamp[:10] if stamp else None


_TS = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ}


def temporal_cast_to_text(node: exp.Expression) -> exp.Expression:
    """``timestamptz '2024-01-01 00:00+02'`` -> ``'2023-12-31 22:00:00'``; ``x::date`` -> ``date(x)``."""
    if not isinstance(node, exp.Cast):
        return node
    kind = node.to.this
    text = literal_text(node.this) if isinstance(node.this, exp.Literal) else None
    if kind in _TS:
        folded = format_timestamp(text) if text is not None else None
        return string(folded) if folded else call("datetime", node.this.copy())
    if kind == exp.DataType.Type.DATE:
        folded = format_date(text) if text is not None else None
        return string(folded) if folded else call("date", node.this.copy())
    if kind in (exp.DataType.Type.TIME, exp.DataType.Type.TIMETZ):
        return call("time", node.this.copy())
    return node
