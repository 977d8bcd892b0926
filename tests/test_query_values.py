"""Rewritten expressions give PostgreSQL's values: each evaluated on PostgreSQL and, translated, on SQLite."""

from __future__ import annotations

from typing import Any

import apsw
import psycopg

from pg2edge.translators.findings import Level
from pg2edge.translators.query import translate_sql
from tests.support.corpus import normalize, values_equal

TS = "timestamptz '2024-02-29 10:11:12.5+00'"
EXPRESSIONS = [
    # date_trunc
    "date_trunc('week', timestamptz '2024-06-05 13:14:15+00')",
    "date_trunc('week', timestamptz '2024-06-03 00:00:00+00')",
    "date_trunc('week', timestamptz '2024-06-09 23:59:59+00')",
    "date_trunc('quarter', timestamptz '2024-08-15 10:00:00+00')",
    "date_trunc('quarter', timestamptz '2024-12-31 23:00:00+00')",
    f"date_trunc('year', {TS})", f"date_trunc('month', {TS})", f"date_trunc('day', {TS})",
    f"date_trunc('hour', {TS})", f"date_trunc('minute', {TS})", f"date_trunc('second', {TS})",
    # extract
    *[f"extract({part} from {TS})" for part in
      ("year", "month", "day", "hour", "minute", "second", "dow", "doy", "week", "quarter", "isodow", "epoch")],
    "extract(week from timestamptz '2024-12-30 00:00:00+00')",
    "date_part('isoyear', timestamptz '2024-12-30 00:00:00+00')",
    "extract(epoch from timestamptz '2024-01-02 00:00:00+00' - timestamptz '2024-01-01 12:00:00+00')",
    # interval arithmetic, time zones, casts of literals
    "timestamptz '2024-01-31 10:00:00+00' + interval '1 day 2 hours'",
    "timestamptz '2024-03-10 12:00:00+00' - interval '1 week'",
    "interval '90 minutes' + timestamptz '2024-03-10 23:00:00+00'",
    "timestamptz '2024-01-01 00:00:00+00' AT TIME ZONE 'UTC'",
    "timestamptz '2024-06-01 01:30:00+02'",
    "date '2024-02-28' + 1",
    "CAST(timestamptz '2024-06-01 01:30:00+02' AS date)",  # sqlglot misparses typed-literal::type
    "current_date - 1 < current_date",
    # numbers and booleans
    "2.5::int", "(-2.5)::int", "'3.7'::numeric::int", "12.345::numeric(6, 2)",
    "'yes'::boolean", "'off'::boolean", "1 = ANY(ARRAY[1, 2])", "3 <> ALL(ARRAY[1, 2])", "3 = ANY(ARRAY[1, 2])",
    "LEAST(3, NULL, 1)", "GREATEST(NULL, 2)", "GREATEST(1, 5, 3)",
    # strings and arrays
    "lpad('7', 3, '0')", "lpad('hello', 3)", "lpad('ab', 7, 'xyz')", "rpad('ab', 5, 'xy')", "rpad('toolong', 3)",
    "lpad('', 2, '*')", "left('hello', 2)", "right('hello', 3)", r"E'a\tb'",
    "array_to_string(ARRAY['a', NULL, 'c'], ',')", "array_to_string(ARRAY['x', 'y', 'z'], ' / ')",
    "array_length(ARRAY[1, 2, 3], 1)", "(ARRAY['a', 'b'])[2]", "'abc' ILIKE 'A%'",
]


def test_expressions_evaluate_like_postgres(pg_dsn: str) -> None:
    lite = apsw.Connection(":memory:")
    mismatches: list[str] = []
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        for expr in EXPRESSIONS:
            sql = f"SELECT {expr}"
            want: Any = normalize(pg.execute(sql).fetchone()[0])  # type: ignore[index]
            result = translate_sql(sql)
            assert not [f for f in result.findings if f.level >= Level.WARN], (expr, result.findings)
            got = normalize(next(iter(lite.execute(result.sql)))[0])
            if not values_equal(want, got):
                mismatches.append(f"{expr}: postgres {want!r}, sqlite {got!r} via {result.sql}")
    assert not mismatches, "\n".join(mismatches)
