"""Run a corpus query on PostgreSQL and, translated, on the SQLite replica: equal, or refused by name."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from typing import Any

import apsw
import psycopg
import sqlglot

from pg2edge.translators.codec.temporal import interval_python
from pg2edge.translators.findings import Level
from pg2edge.translators.query import translate_sql
from pg2edge.translators.recorded import SourceTypes
from tests.query_corpus import CorpusQuery


def normalize(value: Any) -> Any:
    if isinstance(value, dt.timedelta):  # an interval: as the codec stores it (ISO-8601 duration)
        return interval_python(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        # the codec keeps PostgreSQL's trimmed fraction ('.52881', not '.528810')
        return text + ("." + f"{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def values_equal(pg: Any, lite: Any) -> bool:
    if pg is None or lite is None:
        return pg is None and lite is None
    if isinstance(pg, (int, float)) or isinstance(lite, (int, float)):
        try:
            return math.isclose(float(pg), float(lite), rel_tol=1e-9, abs_tol=1e-6)
        except (TypeError, ValueError):
            return False
    return bool(pg == lite)


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    key = []
    for v in row:
        try:
            key.append(("n", round(float(v), 6)) if v is not None else ("", 0))
        except (TypeError, ValueError):
            key.append(("s", str(v)))
    return tuple(key)


def rows_equal(pg_rows: list[tuple[Any, ...]], lite_rows: list[tuple[Any, ...]], *, ordered: bool) -> bool:
    if len(pg_rows) != len(lite_rows):
        return False
    if not ordered:
        pg_rows, lite_rows = sorted(pg_rows, key=_sort_key), sorted(lite_rows, key=_sort_key)
    return all(len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
               for a, b in zip(pg_rows, lite_rows))


def has_order_by(sql: str) -> bool:
    return sqlglot.parse_one(sql, read="postgres").args.get("order") is not None


def run_one(query: CorpusQuery, pg: psycopg.Connection[Any], lite: apsw.Connection,
            types: SourceTypes) -> tuple[str, str]:
    """('equal' | 'reported' | 'failed', detail)."""
    pg_rows = [tuple(normalize(v) for v in row) for row in pg.execute(query.sql).fetchall()]
    result = translate_sql(query.sql, column_types=types.tables, enums=types.enums, fts=types.fts,
                           timestamps=types.timestamps)
    serious = {f.code for f in result.findings if f.level >= Level.WARN}
    if query.untranslatable:
        missing = set(query.untranslatable) - serious
        return ("failed", f"expected findings {sorted(missing)} not reported") if missing else ("reported", "")
    if serious:
        return "reported", f"unexpected findings {sorted(serious)}"
    try:
        lite_rows = [tuple(normalize(v) for v in row) for row in lite.execute(result.sql).fetchall()]
    except apsw.Error as exc:
        return "failed", f"SQLite error {exc!r} running {result.sql}"
    if not rows_equal(pg_rows, lite_rows, ordered=has_order_by(query.sql)):
        return "failed", f"mismatch\n  sqlite: {result.sql}\n  pg:     {pg_rows[:5]}\n  lite:   {lite_rows[:5]}"
    return "equal", ""




def run_corpus(corpus: tuple[CorpusQuery, ...], dsn: str, replica: str, types: SourceTypes) -> dict[str, list[str]]:
    """Every query on both databases; asserts none failed and only the expected ones were refused."""
    lite = apsw.Connection(replica)
    outcomes: dict[str, list[str]] = {"equal": [], "reported": [], "failed": []}
    details: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        for query in corpus:
            outcome, detail = run_one(query, pg, lite, types)
            outcomes[outcome].append(query.name)
            if outcome != "equal" and detail:
                details.append(f"{query.name}: {outcome}: {detail}")
    print(f"\ncorpus: {len(outcomes['equal'])} translated-and-equal, {len(outcomes['reported'])} reported "
          f"untranslatable, {len(outcomes['failed'])} failed (of {len(corpus)})")
    print("\n".join(details))
    assert not outcomes["failed"], "\n".join(details)
    # the queries meant to translate must not hide behind a finding
    assert set(outcomes["reported"]) == {q.name for q in corpus if q.untranslatable}, "\n".join(details)
    return outcomes
