"""The corpus: real queries on PostgreSQL vs. their translation on an SQLite copy of the same data."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest
import sqlglot

from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.translators.findings import Level
from pg2edge.translators.query import translate_sql
from tests.query_corpus import CORPUS, CorpusQuery
from tests.support.pgtypes import column_types


@pytest.fixture(scope="module")
def shop_copy(shop_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    """The SQLite copy made by the real snapshot path (value codec included)."""
    path = tmp_path_factory.mktemp("corpus") / "shop.db"
    run_snapshot(dsn=shop_dsn, target=path, say=lambda _: None)
    with psycopg.connect(shop_dsn) as conn:
        return path, column_types(conn)


def normalize(value: Any) -> Any:
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
            types: dict[str, dict[str, str]]) -> tuple[str, str]:
    """('equal' | 'reported' | 'failed', detail)."""
    pg_rows = [tuple(normalize(v) for v in row) for row in pg.execute(query.sql).fetchall()]
    result = translate_sql(query.sql, column_types=types)
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


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40
    assert len({q.name for q in CORPUS}) == len(CORPUS)


def test_corpus_matches_postgres(shop_dsn: str, shop_copy: tuple[Path, dict[str, dict[str, str]]]) -> None:
    path, types = shop_copy
    lite = apsw.Connection(str(path))
    outcomes: dict[str, list[str]] = {"equal": [], "reported": [], "failed": []}
    details: list[str] = []
    with psycopg.connect(shop_dsn, autocommit=True) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        for query in CORPUS:
            outcome, detail = run_one(query, pg, lite, types)
            outcomes[outcome].append(query.name)
            if outcome != "equal" and detail:
                details.append(f"{query.name}: {outcome}: {detail}")
    print(f"\ncorpus: {len(outcomes['equal'])} translated-and-equal, {len(outcomes['reported'])} reported "
          f"untranslatable, {len(outcomes['failed'])} failed (of {len(CORPUS)})")
    print("\n".join(details))
    assert not outcomes["failed"], "\n".join(details)
    # the queries meant to translate must not hide behind a finding
    expected_reported = {q.name for q in CORPUS if q.untranslatable}
    assert set(outcomes["reported"]) == expected_reported, "\n".join(details)
