"""Findings: what does not translate exactly is named, with a level; strict mode raises."""

from __future__ import annotations

import pytest

from pg2edge.translators.findings import Level, StrictModeError
from pg2edge.translators.query import QuerySyntaxError, QueryTranslation, translate_sql

SHOP_TYPES = {
    "products": {"id": "uuid", "price": "numeric(12,2)", "name": "text", "active": "boolean", "category_id": "bigint"},
    "orders": {"id": "bigint", "total": "numeric(12,2)", "status": "order_status", "product_id": "uuid",
               "quantity": "integer", "created_at": "timestamp with time zone"},
}


def codes(sql: str, **kw: object) -> dict[str, Level]:
    return {f.code: f.level for f in translate_sql(sql, **kw).findings}  # type: ignore[arg-type]


def test_findings_table() -> None:
    table = [
        ("SELECT ts AT TIME ZONE 'Europe/Berlin' FROM t", "timezone", Level.ERROR),
        ("SELECT * FROM t WHERE name ILIKE 'a%'", "ilike_ascii", Level.INFO),
        ("SELECT LEAST(a, b) FROM t", "least_greatest_nulls", Level.INFO),
        ("SELECT * FROM t WHERE x = ANY(%s)", "array_parameter", Level.WARN),
        ("SELECT * FROM t WHERE x > ANY(ARRAY[1])", "unsupported_operator", Level.ERROR),
        ("SELECT * FROM t WHERE doc @@ to_tsquery('x')", "fulltext", Level.ERROR),
        ("SELECT * FROM t WHERE attributes @> '{}'", "unsupported_operator", Level.WARN),
        ("SELECT * FROM t WHERE x ~ '^a'", "unsupported_operator", Level.WARN),
        ("SELECT date_trunc('day', ts) FROM t", "utc_fields", Level.INFO),
        ("SELECT DISTINCT ON (a) * FROM t ORDER BY a", "distinct_on_star", Level.WARN),
        ("SELECT string_agg(DISTINCT s, '; ') FROM t", "unsupported_aggregate", Level.ERROR),
        ("SELECT split_part(s, ',', -1) FROM t", "split_part", Level.ERROR),
        ("SELECT split_part(s, d, 1) FROM t", "split_part", Level.ERROR),
        ("SELECT initcap(s) FROM t", "unsupported_function", Level.WARN),
        ("SELECT * FROM t WHERE name LIKE $1", "like_case", Level.ERROR),
        ("SELECT substring(s from '[0-9]+') FROM t", "regex_substring", Level.ERROR),
        ("SELECT x::interval FROM t", "unsupported_interval", Level.ERROR),
        ("SELECT ts + interval '2' * n FROM t", "unsupported_interval", Level.ERROR),
        ("SELECT x::int[] FROM t", "unsupported_cast", Level.ERROR),
        ("SELECT date_trunc('millennium', ts) FROM t", "unsupported_date_part", Level.ERROR),
        ("SELECT * FROM t WHERE price > 10", "numeric_text_compare", Level.INFO),
    ]
    for sql, code, level in table:
        assert codes(sql).get(code) == level, (sql, codes(sql))


def test_translations_that_are_exact_have_no_warnings() -> None:
    for sql in ("SELECT a, count(*) FROM t GROUP BY a ORDER BY a",
                "SELECT ts + interval '1 day' FROM t",
                "SELECT * FROM t WHERE x = ANY(ARRAY[1, 2])",
                "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b"):
        assert all(f.level < Level.WARN for f in translate_sql(sql).findings), sql


def test_column_types_cast_numeric_and_report_precision() -> None:
    sql = "SELECT p.name, avg(o.total) FROM orders o JOIN products p ON p.id = o.product_id WHERE p.price > 10 GROUP BY p.name ORDER BY p.name"
    result = translate_sql(sql, column_types=SHOP_TYPES)
    assert result.sql == (
        "SELECT p.name, AVG(CAST(o.total AS REAL)) FROM orders AS o JOIN products AS p ON p.id = o.product_id "
        "WHERE CAST(p.price AS REAL) > 10 GROUP BY p.name ORDER BY p.name NULLS LAST")
    found = {(f.code, f.object) for f in result.findings}
    assert ("numeric_as_real", "o.total") in found
    assert ("numeric_as_real", "p.price") in found
    assert ("text_collation", "p.name") in found
    assert "numeric_text_compare" not in {f.code for f in result.findings}


def test_unqualified_numeric_column_resolves_through_the_only_table_that_has_it() -> None:
    result = translate_sql("SELECT id FROM orders JOIN products ON products.id = orders.product_id WHERE total >= 5",
                           column_types=SHOP_TYPES)
    assert "CAST(total AS REAL) >= 5" in result.sql


def test_numeric_cast_to_int_rounds_like_postgres() -> None:
    result = translate_sql("SELECT total::int FROM orders", column_types=SHOP_TYPES)
    assert result.sql == "SELECT CAST(ROUND(CAST(total AS REAL)) AS INTEGER) FROM orders"


def test_enum_order_is_a_warning_with_column_types() -> None:
    result = translate_sql("SELECT status FROM orders ORDER BY status", column_types=SHOP_TYPES)
    [finding] = [f for f in result.findings if f.code == "enum_order"]
    assert finding.level == Level.WARN and finding.object == "status" and "order_status" in finding.message
    assert codes("SELECT count(*) FROM orders WHERE status = 'paid'", column_types=SHOP_TYPES).get("enum_order") is None


def test_strict_mode_raises_on_warn_and_names_the_finding() -> None:
    with pytest.raises(StrictModeError) as info:
        translate_sql("SELECT * FROM t WHERE attributes @> '{}'", strict=True)
    assert "unsupported_operator" in str(info.value)
    assert info.value.exit_code == 1


def test_strict_mode_allows_info() -> None:
    result = translate_sql("SELECT * FROM t WHERE name ILIKE 'a%'", strict=True)
    assert [f.code for f in result.findings] == ["ilike_ascii"]


def test_multiple_statements_are_each_translated() -> None:
    result = translate_sql("SELECT now(); UPDATE t SET active = true WHERE name ILIKE 'x'")
    assert isinstance(result, QueryTranslation)
    assert result.statements == ("SELECT CURRENT_TIMESTAMP", "UPDATE t SET active = 1 WHERE name LIKE 'x'")
    assert result.sql == "SELECT CURRENT_TIMESTAMP;\nUPDATE t SET active = 1 WHERE name LIKE 'x'"
    assert [f.code for f in result.findings] == ["ilike_ascii"]


def test_result_is_frozen() -> None:
    result = translate_sql("SELECT 1")
    with pytest.raises(AttributeError):
        result.sql = "x"  # type: ignore[misc]


def test_syntax_error_names_the_query() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        translate_sql("SELECT FROM WHERE (")
    assert "SELECT FROM WHERE" in str(info.value)
    assert info.value.exit_code == 2


def test_sum_of_numeric_with_a_scale_is_exact_text() -> None:
    import apsw

    db = apsw.Connection(":memory:")
    db.execute("CREATE TABLE orders (id INTEGER, total TEXT)")
    db.executemany("INSERT INTO orders VALUES (?, ?)", [(1, "0.10"), (2, "0.20"), (3, "-5.05"), (4, "243.01")])
    exact = translate_sql("SELECT sum(total), sum(total) * 2 AS twice FROM orders", column_types=SHOP_TYPES).sql
    assert db.execute(exact).fetchall() == [("238.26", 476.52)]
    ordered = translate_sql("SELECT id, sum(total) AS s FROM orders GROUP BY id ORDER BY s", column_types=SHOP_TYPES)
    assert [r[0] for r in db.execute(ordered.sql)] == [3, 1, 2, 4]  # by value, not by text


def test_boolean_result_columns_are_named() -> None:
    result = translate_sql("SELECT name, active FROM products", column_types=SHOP_TYPES)
    assert ("boolean_output", "active") in {(f.code, f.object) for f in result.findings}
    plain = translate_sql("SELECT name FROM products WHERE active", column_types=SHOP_TYPES)
    assert "boolean_output" not in {f.code for f in plain.findings}


def test_stored_interval_columns_are_refused_in_arithmetic_and_comparisons() -> None:
    types = {"jobs": {"started_at": "timestamp with time zone", "budget": "interval"}}
    for sql in ("SELECT started_at + budget FROM jobs", "SELECT * FROM jobs WHERE budget > interval '1 hour'",
                "SELECT max(budget) FROM jobs", "SELECT * FROM jobs ORDER BY budget"):
        assert "interval_column" in {f.code for f in translate_sql(sql, column_types=types).errors}, sql
    assert not translate_sql("SELECT budget FROM jobs", column_types=types).errors


def test_unix_timestamp_replicas_are_refused_where_timestamps_are_read() -> None:
    sql = "SELECT id FROM orders WHERE created_at > now() - interval '1 day'"
    assert "timestamps_mode" in {f.code for f in translate_sql(sql, column_types=SHOP_TYPES, timestamps="unix").errors}
    assert not translate_sql(sql, column_types=SHOP_TYPES, timestamps="iso").errors
    assert not translate_sql("SELECT id FROM orders", column_types=SHOP_TYPES, timestamps="unix_ms").errors
