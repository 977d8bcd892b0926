"""Golden tables, sqlglot style: PostgreSQL in -> SQLite out, one test per feature (no database needed)."""

from __future__ import annotations

import apsw
import pytest

from pg2edge.config import TranslateConfig
from pg2edge.translators.ddl import plan_ddl
from pg2edge.translators.schema import Check, Column, Index, Schema, Table
from pg2edge.translators.typemap import rule_for

NUM = lambda p, s: (p << 16 | s) + 4  # noqa: E731  numeric typmod

TYPES = [
    # (type_name, typmod, options, declared SQLite type, PostgreSQL text, SQLite value)
    ("int2", -1, {}, "INTEGER", "-32768", -32768),
    ("int8", -1, {}, "INTEGER", "9223372036854775807", 9223372036854775807),
    ("numeric", -1, {}, "TEXT", "1.50", "1.50"),
    ("numeric", -1, {}, "TEXT", "NaN", "NaN"),
    ("numeric", NUM(12, 2), {}, "TEXT", "-0.01", "-0.01"),
    ("numeric", NUM(10, 0), {}, "INTEGER", "42", 42),
    ("numeric", NUM(30, 0), {}, "TEXT", "123456789012345678901234567890", "123456789012345678901234567890"),
    ("numeric", -1, {"numeric": "integer"}, "INTEGER", "7", 7),
    ("numeric", -1, {"numeric": "real"}, "REAL", "2.5", 2.5),
    ("float8", -1, {}, "REAL", "-Infinity", float("-inf")),
    ("float4", -1, {}, "REAL", "1.5", 1.5),
    ("bool", -1, {}, "INTEGER", "t", 1),
    ("bool", -1, {}, "INTEGER", "f", 0),
    ("uuid", -1, {}, "TEXT", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("bytea", -1, {}, "BLOB", "\\x00ff", b"\x00\xff"),
    ("bytea", -1, {}, "BLOB", "a\\\\b\\000", b"a\\b\x00"),
    ("date", -1, {}, "TEXT", "2024-02-29", "2024-02-29"),
    ("time", -1, {}, "TEXT", "12:34:56.5", "12:34:56.5"),
    ("timetz", -1, {}, "TEXT", "12:00:00+02", "12:00:00+02:00"),
    ("timestamp", -1, {}, "TEXT", "2024-01-01 12:00:00.5", "2024-01-01 12:00:00.5"),
    ("timestamptz", -1, {}, "TEXT", "2024-01-01 12:00:00.123456+00", "2024-01-01 12:00:00.123456"),
    ("timestamptz", -1, {}, "TEXT", "2024-01-01 01:00:00+05:30", "2023-12-31 19:30:00"),
    ("timestamptz", -1, {}, "TEXT", "1900-01-01 00:19:32+00:19:32", "1900-01-01 00:00:00"),
    ("timestamptz", -1, {"timestamps": "unix"}, "INTEGER", "1970-01-02 00:00:00+00", 86400),
    ("timestamptz", -1, {"timestamps": "unix_ms"}, "INTEGER", "1970-01-01 00:00:01.5+00", 1500),
    ("interval", -1, {}, "TEXT", "1 year 2 mons 3 days 04:05:06.5", "P1Y2M3DT4H5M6.5S"),
    ("interval", -1, {}, "TEXT", "-1 days +02:00:00", "P-1DT2H"),
    ("interval", -1, {}, "TEXT", "00:00:00", "PT0S"),
    ("jsonb", -1, {}, "TEXT", '{"a": [1, 2]}', '{"a": [1, 2]}'),
    ("inet", -1, {}, "TEXT", "10.0.0.1/8", "10.0.0.1/8"),
    ("int4range", -1, {}, "TEXT", "[1,5)", "[1,5)"),
    ("bpchar", -1, {}, "TEXT", "ab   ", "ab   "),
]


@pytest.mark.parametrize(("type_name", "typmod", "opts", "decl", "text", "value"), TYPES)
def test_type_mapping(type_name: str, typmod: int, opts: dict, decl: str, text: str, value: object) -> None:
    rule = rule_for(Column("c", type_name, type_name, typmod=typmod), options=TranslateConfig(**opts))
    assert rule.decl == decl
    got = rule.text(text)
    assert got == value and type(got) is type(value)


ARRAYS = [
    ("int4", "{}", "[]"),
    ("int4", "{1,NULL,3}", "[1,null,3]"),
    ("int4", "{{1,2},{3,4}}", "[[1,2],[3,4]]"),
    ("text", '{"",NULL,"NULL","a,b","c\\"d","e\\\\f"}', '["",null,"NULL","a,b","c\\"d","e\\\\f"]'),
    ("numeric", "{1.10,2}", "[1.10,2]"),
    ("bool", "{t,f}", "[true,false]"),
    ("jsonb", '{"{\\"a\\": 1}"}', '[{"a": 1}]'),
    ("timestamptz", '{"2024-01-01 00:00:00+00"}', '["2024-01-01 00:00:00"]'),
    ("int4", "[0:1]={1,2}", None),  # lower bound dropped: Inexact
]


@pytest.mark.parametrize(("element", "text", "expected"), ARRAYS)
def test_array_mapping(element: str, text: str, expected: str | None) -> None:
    from pg2edge.translators.codec import Inexact

    rule = rule_for(Column("a", f"{element}[]", f"_{element}", is_array=True, element_type=element))
    assert rule.decl == "TEXT"
    if expected is None:
        with pytest.raises(Inexact):
            rule.text(text)
    else:
        assert rule.text(text) == expected


def _ddl(columns: tuple[Column, ...], **table: object) -> str:
    plan = plan_ddl(Schema(tables=(Table("public", "t", columns, **table),)))  # type: ignore[arg-type]
    db = apsw.Connection(":memory:")
    for statement in plan.statements:
        db.execute(statement)  # every golden output runs on SQLite
    return plan.sql


DEFAULTS = [
    ("'active'::character varying", "varchar", "DEFAULT 'active'"),
    ("0", "int4", "DEFAULT 0"),
    ("'-1.50'::numeric", "numeric", "DEFAULT '-1.50'"),
    ("true", "bool", "DEFAULT 1"),
    ("'{}'::jsonb", "jsonb", "DEFAULT '{}'"),
    ("now()", "timestamptz", "DEFAULT CURRENT_TIMESTAMP"),
    ("CURRENT_DATE", "date", "DEFAULT (CURRENT_DATE)"),
    ("'2024-01-01 00:00:00+02'::timestamp with time zone", "timestamptz", "DEFAULT '2023-12-31 22:00:00'"),
    ("(length('abc'::text) + 1)", "int4", "DEFAULT (LENGTH('abc') + 1)"),
]


@pytest.mark.parametrize(("default", "type_name", "expected"), DEFAULTS)
def test_defaults(default: str, type_name: str, expected: str) -> None:
    assert expected in _ddl((Column("c", type_name, type_name, default=default),))


CHECKS = [
    ("(qty > 0)", "CHECK /* pg2edge */ ((qty > 0))"),
    ("(price >= (0)::numeric)", "CHECK /* pg2edge */ ((CAST(price AS REAL) >= CAST((0) AS REAL)))"),
    ("((status)::text = ANY ((ARRAY['a'::character varying, 'b'::character varying])::text[]))",
     "CHECK /* pg2edge */ (((status) IN ('a', 'b')))"),
    ("(length(status) < 10)", "CHECK /* pg2edge */ ((LENGTH(status) < 10))"),
]


@pytest.mark.parametrize(("check", "expected"), CHECKS)
def test_checks(check: str, expected: str) -> None:
    cols = (Column("qty", "integer", "int4"), Column("price", "numeric", "numeric"),
            Column("status", "character varying(10)", "varchar"))
    assert expected in _ddl(cols, checks=(Check("k", check),))


def test_untranslatable_check_is_dropped_with_a_finding() -> None:
    cols = (Column("email", "text", "text"),)
    plan = plan_ddl(Schema(tables=(Table("public", "t", cols, checks=(Check("k", "(email ~* '^a')"),)),)))
    assert "CHECK" not in plan.sql
    assert any(f.object.startswith("public.t") and "email ~* '^a'" in f.message for f in plan.findings)


INDEXES = [
    (Index("i1", ("a",)), 'CREATE INDEX "i1" ON "t" ("a")'),
    (Index("i2", ("a", "b"), unique=True, descending=(False, True)), 'CREATE UNIQUE INDEX "i2" ON "t" ("a", "b" DESC)'),
    (Index("i3", ("lower(b)",), expressions=(True,)), 'CREATE INDEX "i3" ON "t" ((LOWER(b)))'),
    (Index("i4", ("a",), predicate="(b IS NOT NULL)"), 'CREATE INDEX "i4" ON "t" ("a") WHERE (NOT b IS NULL)'),
]


@pytest.mark.parametrize(("index", "expected"), INDEXES)
def test_indexes(index: Index, expected: str) -> None:
    cols = (Column("a", "integer", "int4"), Column("b", "text", "text"))
    assert expected in _ddl(cols, indexes=(index,))


def test_integer_primary_key_is_a_rowid_alias_and_composite_is_not() -> None:
    one = _ddl((Column("id", "bigint", "int8", not_null=True, default="nextval('s'::regclass)"),),
               primary_key=("id",))
    assert '"id" INTEGER PRIMARY KEY NOT NULL' in one and "nextval" not in one
    two = _ddl((Column("a", "integer", "int4"), Column("b", "integer", "int4")), primary_key=("a", "b"))
    assert 'PRIMARY KEY ("a", "b")' in two


def test_cast_override() -> None:
    col = Column("p", "numeric(12,2)", "numeric", typmod=NUM(12, 2))
    rule = rule_for(col, options=TranslateConfig(cast={"numeric(12,2)": "REAL"}))
    assert rule.decl == "REAL" and rule.text("1.25") == 1.25
