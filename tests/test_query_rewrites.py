"""Each rewrite in isolation: applies to its node, leaves others untouched, never mutates its input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlglot
from sqlglot import exp

from pg2edge.translators.query import rewrites, temporal
from pg2edge.translators.query.columns import numeric_columns_to_real
from pg2edge.translators.query.rewrites import REWRITES

# rewrite -> (PostgreSQL expression it applies to, that node rewritten, printed as SQLite)
CASES: dict[Callable[[exp.Expression], exp.Expression], tuple[str, str]] = {
    rewrites.escape_string_to_literal: (r"E'a\tb'", "'a\tb'"),
    rewrites.dollar_parameter_to_numbered: ("$3", "?3"),
    temporal.temporal_cast_to_text: ("timestamptz '2024-05-01 02:00:00+02'", "'2024-05-01 00:00:00'"),
    rewrites.pg_cast_to_storage: ("x::numeric", "CAST(x AS REAL)"),
    temporal.at_time_zone_utc_to_value: ("ts AT TIME ZONE 'UTC'", "ts"),
    temporal.interval_arithmetic_to_datetime: ("ts - interval '3 days'", "DATETIME(SUBSTR(ts, 1, 19), '-3 days') || SUBSTR(ts, 20)"),
    temporal.extract_to_strftime: ("extract(month from ts)", "CAST(STRFTIME('%m', SUBSTR(ts, 1, 19)) AS INTEGER)"),
    temporal.date_trunc_to_datetime: ("date_trunc('month', ts)", "DATETIME(SUBSTR(ts, 1, 19), 'start of month')"),
    rewrites.ilike_to_like: ("a ILIKE 'x%'", "a LIKE 'x%'"),
    rewrites.any_array_to_in: ("x = ANY(ARRAY[1, 2])", "x IN (1, 2)"),
    rewrites.array_to_string_to_group_concat: (
        "array_to_string(tags, ',')",
        "(SELECT GROUP_CONCAT(value, ',' ORDER BY key NULLS LAST) FROM JSON_EACH(tags))"),
    rewrites.array_functions_to_json: ("cardinality(tags)", "JSON_ARRAY_LENGTH(tags)"),
    rewrites.json_functions_to_sqlite: ("jsonb_build_array(1, 2)", "JSON_ARRAY(1, 2)"),
    rewrites.pad_to_substr: (
        "lpad(s, 3, '0')",
        "CASE WHEN LENGTH(s) >= 3 THEN SUBSTR(s, 1, 3) ELSE SUBSTR(REPLACE(HEX(ZEROBLOB(3)), '00', '0'), 1, 3 - LENGTH(s)) || s END"),
    rewrites.left_right_to_substr: ("left(s, 2)", "SUBSTR(s, 1, 2)"),
    rewrites.least_greatest_to_min_max: ("LEAST(a, b)", "MIN(COALESCE(a, b), COALESCE(b, a))"),
    rewrites.string_agg_distinct_default_separator: ("string_agg(DISTINCT s, ',')", "GROUP_CONCAT(DISTINCT s)"),
    rewrites.boolean_to_integer: ("true", "1"),
}
UPSERT = ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING", "INSERT INTO t (a) VALUES (1) ON CONFLICT(a) DO NOTHING")
DISTINCT_ON = ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b",
               "SELECT a, b FROM (SELECT a AS a, b AS b, ROW_NUMBER() OVER (PARTITION BY a ORDER BY a NULLS LAST, "
               "b NULLS LAST) AS _row_number FROM t) AS _distinct_on WHERE _row_number = 1 ORDER BY a NULLS LAST, b NULLS LAST")


def _parse(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="postgres")


def test_every_registered_rewrite_has_a_case() -> None:
    covered = set(CASES) | {rewrites.distinct_on_to_row_number, rewrites.conflict_keys_to_columns}
    assert set(REWRITES) == covered
    assert len(set(REWRITES)) == len(REWRITES)


@pytest.mark.parametrize("rewrite", list(CASES), ids=lambda f: f.__name__)
def test_rewrite_applies_without_mutating_input(rewrite: Callable[[exp.Expression], exp.Expression]) -> None:
    pg, lite = CASES[rewrite]
    node = _parse(pg)
    before = node.sql(dialect="postgres")
    out = rewrite(node)
    assert out is not node
    assert out.sql(dialect="sqlite") == lite
    assert node.sql(dialect="postgres") == before


@pytest.mark.parametrize("rewrite", [*CASES, rewrites.distinct_on_to_row_number, rewrites.conflict_keys_to_columns],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("other", ["x", "1", "'text'", "a + b", "SELECT a FROM t ORDER BY a", "x = y"])
def test_rewrite_returns_input_when_it_does_not_apply(rewrite: Callable[[exp.Expression], exp.Expression],
                                                      other: str) -> None:
    node = _parse(other)
    assert rewrite(node) is node


def test_distinct_on_rewrite() -> None:
    node = _parse(DISTINCT_ON[0])
    out = rewrites.distinct_on_to_row_number(node)
    assert out.sql(dialect="sqlite") == DISTINCT_ON[1]
    assert node.sql(dialect="postgres") == _parse(DISTINCT_ON[0]).sql(dialect="postgres")


def test_conflict_keys_rewrite() -> None:
    node = _parse(UPSERT[0])
    conflict = node.args["conflict"]
    out = rewrites.conflict_keys_to_columns(conflict)
    assert out is not conflict
    node.set("conflict", out)
    assert node.sql(dialect="sqlite") == UPSERT[1]


def test_interval_rewrite_leaves_unknown_units_alone() -> None:
    for pg in ("ts + interval '1 fortnight'", "ts + n", "a - b", "ts + make_interval(days => 1)"):
        node = _parse(pg)
        assert temporal.interval_arithmetic_to_datetime(node) is node


def test_at_time_zone_keeps_other_zones() -> None:
    node = _parse("ts AT TIME ZONE 'Europe/Berlin'")
    assert temporal.at_time_zone_utc_to_value(node) is node


def test_date_trunc_keeps_unknown_unit() -> None:
    node = _parse("date_trunc('millennium', ts)")
    assert temporal.date_trunc_to_datetime(node) is node


def test_numeric_columns_rewrite_needs_a_known_numeric_column() -> None:
    rewrite = numeric_columns_to_real({"products": {"price": "numeric(12,2)", "name": "text"}})
    tree = _parse("SELECT name FROM products WHERE price > 10 AND name > 'a'")
    price = next(c for c in tree.find_all(exp.Column) if c.name == "price")
    name = next(c for c in tree.find_all(exp.Column) if c.name == "name" and isinstance(c.parent, exp.GT))
    assert rewrite(price).sql(dialect="sqlite") == "CAST(price AS REAL)"
    assert rewrite(name) is name
    projected = tree.expressions[0]
    assert rewrite(projected) is projected  # a bare projection keeps the exact text


@pytest.mark.parametrize(("text", "stored"), [
    ("2024-01-01 00:00:00+02", "2023-12-31 22:00:00"),
    ("2024-01-01T10:00:00Z", "2024-01-01 10:00:00"),
    ("2024-01-01 10:00:00.123456", "2024-01-01 10:00:00.123456"),
    ("2024-01-01", "2024-01-01 00:00:00"),
    ("2024-06-30 23:30:00-01:00", "2024-07-01 00:30:00"),
    ("not a time", None),
])
def test_format_timestamp(text: str, stored: str | None) -> None:
    assert temporal.format_timestamp(text) == stored


def test_docs_list_every_rewrite_and_finding_code() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "translate-query.md").read_text()
    for rewrite in REWRITES:
        assert f"`{rewrite.__name__}`" in doc, rewrite.__name__
    import re

    for module in Path(rewrites.__file__).parent.glob("*.py"):
        for code in set(re.findall(r'Level\.\w+, "(\w+)"', module.read_text())):
            assert f"`{code}`" in doc, (module.name, code)
    for semantic in ("numeric_columns_to_real", "temporal_arithmetic", "enum_ordering", "text_semantics"):
        assert f"`{semantic}`" in doc, semantic
