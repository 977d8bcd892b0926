"""Dates, times, timestamps and intervals: PostgreSQL text (ISO DateStyle) or Python -> SQLite.

Storage (``timestamps = "iso"``, the default): UTC text ``YYYY-MM-DD HH:MM:SS[.ffffff]``
with no zone suffix and PostgreSQL's trimmed fraction. It sorts correctly as
text, SQLite's ``datetime()``/``strftime()`` read it, and ``CURRENT_TIMESTAMP``
produces the same shape. ``unix`` stores INTEGER seconds, ``unix_ms`` INTEGER
milliseconds. Dates are ``YYYY-MM-DD``; times ``HH:MM:SS[.ffffff]``; timetz
keeps its offset as ``+HH:MM``; intervals become ISO-8601 durations
(PostgreSQL's ``iso_8601`` interval style, e.g. ``P1Y2M3DT4H5M6.5S``).

Values SQLite's date functions cannot hold (``infinity``, BC, years past 9999)
raise ``Inexact`` with PostgreSQL's own text as the substitute.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from pg2edge.translators.codec.base import Inexact

_TS = re.compile(
    r"^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_UTC = dt.UTC


def _special(kind: str, text: str) -> Inexact:
    if text in ("infinity", "-infinity"):
        return Inexact(f"{kind}-infinity", f"{kind} {text} has no SQLite date form; stored as TEXT", text)
    return Inexact(f"{kind}-range", f"{kind} outside years 0001-9999 (BC or past 9999); stored as TEXT", text)


def _frac(us: int) -> str:
    return f".{us:06d}".rstrip("0") if us else ""


def _fmt(value: dt.datetime) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d} " \
           f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{_frac(value.microsecond)}"


# -- date -----------------------------------------------------------------------------------------------
def date_text(text: str) -> str:
    if len(text) == 10 and text[4] == "-":
        return text
    raise _special("date", text)


def date_python(value: Any) -> str:
    if isinstance(value, str):
        return date_text(value)
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


# -- time / timetz --------------------------------------------------------------------------------------
def time_text(text: str) -> str:
    if text.startswith("24:"):
        raise Inexact("time-2400", "24:00:00 is not a time SQLite's time functions read; stored as TEXT", text)
    return text


def time_python(value: Any) -> str:
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{_frac(value.microsecond)}"


def _offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    if seconds % 60:
        raise ValueError("offset with seconds")
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def timetz_text(text: str) -> str:
    """'12:00:00.5+02' -> '12:00:00.5+02:00' (the shape SQLite's time() reads)."""
    cut = max(text.rfind("+"), text.rfind("-"))
    zone = text[cut:]
    if len(zone) == 3:
        return text + ":00"
    if len(zone) == 6:
        return text
    raise Inexact("timetz-offset", "time zone offset with seconds has no SQLite form; stored as TEXT", text)


def timetz_python(value: Any) -> str:
    offset = value.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    base = time_python(value)
    try:
        return base + _offset(seconds)
    except ValueError:
        raise Inexact("timetz-offset", "time zone offset with seconds has no SQLite form", base) from None


# -- timestamps -----------------------------------------------------------------------------------------
def _parse(text: str, kind: str) -> dt.datetime:
    """A timestamp(tz) text as a naive UTC datetime; Inexact for infinity / BC / year > 9999."""
    match = _TS.match(text)
    if match is None:
        if text in ("infinity", "-infinity"):
            raise _special(kind, text)
        raise ValueError(f"not an ISO timestamp (is DateStyle ISO?): {text!r}")
    year, mon, day, hh, mi, ss, frac, sign, oh, om, os_, bc = match.groups()
    if bc or len(year) > 4:
        raise _special(kind, text)
    value = dt.datetime(int(year), int(mon), int(day), int(hh), int(mi), int(ss),
                        int((frac or "").ljust(6, "0")) if frac else 0)
    if sign:
        offset = dt.timedelta(hours=int(oh), minutes=int(om or 0), seconds=int(os_ or 0))
        try:
            value = value - offset if sign == "+" else value + offset
        except OverflowError:
            raise _special(kind, text) from None
    return value


def _from_python(value: Any, kind: str) -> dt.datetime:
    if isinstance(value, str):
        return _parse(value, kind)
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value


def timestamptz_iso_text(text: str) -> str:
    # Fast path: session TimeZone is UTC, ordinary year, no BC.
    if text.endswith("+00") and len(text) >= 22 and text[4] == "-" and text[10] == " ":
        return text[:-3]
    return _fmt(_parse(text, "timestamptz"))


def timestamp_iso_text(text: str) -> str:
    if len(text) >= 19 and text[4] == "-" and text[10] == " " and not text.endswith("BC"):
        return text
    return _fmt(_parse(text, "timestamp"))


def timestamp_iso_python(value: Any) -> str:
    return _fmt(_from_python(value, "timestamp"))


def _epoch(value: dt.datetime) -> tuple[int, int]:
    days = value.toordinal() - _EPOCH_ORDINAL
    return days * 86400 + value.hour * 3600 + value.minute * 60 + value.second, value.microsecond


def _unix(value: dt.datetime) -> int:
    seconds, us = _epoch(value)
    if us:
        raise Inexact("timestamp-fraction", "sub-second part does not fit INTEGER seconds; stored as REAL",
                      seconds + us / 1_000_000)
    return seconds


def _unix_ms(value: dt.datetime) -> int:
    seconds, us = _epoch(value)
    if us % 1000:
        raise Inexact("timestamp-fraction", "sub-millisecond part does not fit INTEGER milliseconds; stored as REAL",
                      seconds * 1000 + us / 1000)
    return seconds * 1000 + us // 1000


def timestamp_encoders(mode: str, kind: str) -> tuple[Callable[[str], Any], Callable[[Any], Any]]:
    """(text encoder, python encoder) for timestamp/timestamptz under ``timestamps = mode``."""
    if mode == "iso":
        text_enc = timestamptz_iso_text if kind == "timestamptz" else timestamp_iso_text
        return text_enc, timestamp_iso_python
    convert = _unix if mode == "unix" else _unix_ms
    return (lambda text: convert(_parse(text, kind))), (lambda value: convert(_from_python(value, kind)))


# -- interval -------------------------------------------------------------------------------------------
_UNITS = {"year": "Y", "years": "Y", "mon": "M", "mons": "M", "day": "D", "days": "D"}
_TIME = re.compile(r"^([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d+))?$")


def _iso_duration(years: int, months: int, days: int, hours: int, minutes: int, seconds: str) -> str:
    out = "P"
    for value, unit in ((years, "Y"), (months, "M"), (days, "D")):
        if value:
            out += f"{value}{unit}"
    time = ""
    for value, unit in ((hours, "H"), (minutes, "M")):
        if value:
            time += f"{value}{unit}"
    if seconds not in ("0", "-0"):
        time += f"{seconds}S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def interval_text(text: str) -> str:
    """PostgreSQL interval text (IntervalStyle postgres or iso_8601) -> ISO-8601 duration."""
    if text.startswith("P"):
        return text
    fields = {"Y": 0, "M": 0, "D": 0}
    hours = minutes = 0
    seconds = "0"
    parts = text.split()
    i = 0
    while i < len(parts):
        part = parts[i]
        time = _TIME.match(part)
        if time:
            sign, hh, mi, ss, frac = time.groups()
            neg = "-" if sign == "-" else ""
            hours, minutes = int(neg + hh), int(neg + mi)
            sec = str(int(ss)) + ("." + frac.rstrip("0") if frac and frac.rstrip("0") else "")
            seconds = neg + sec if sec != "0" else "0"
            i += 1
        elif i + 1 < len(parts) and parts[i + 1] in _UNITS:
            fields[_UNITS[parts[i + 1]]] += int(part)
            i += 2
        else:
            raise ValueError(f"not a PostgreSQL interval in the postgres style: {text!r}")
    return _iso_duration(fields["Y"], fields["M"], fields["D"], hours, minutes, seconds)


def interval_python(value: Any) -> str:
    """timedelta -> ISO duration. psycopg folds months into 30-day days: load intervals as text when they hold months."""
    if isinstance(value, str):
        return interval_text(value)
    neg = value < dt.timedelta(0)
    if neg:
        value = -value
    sign = "-" if neg else ""
    rest = value.seconds
    sec = str(rest % 60) + _frac(value.microseconds)
    sec_text = sign + sec if sec != "0" else "0"
    hours, minutes = rest // 3600, rest % 3600 // 60
    return _iso_duration(0, 0, -value.days if neg else value.days, -hours if neg else hours,
                         -minutes if neg else minutes, sec_text)
