"""The ONE PostgreSQL -> SQLite type rule table (sqlglot style: a dict of small functions).

``RULES`` maps a column's kind (its base typname, or 'array' / 'enum') to a
function ``(column, options) -> TypeRule``. A rule gives the SQLite column
declaration, the value encoders (PostgreSQL text and Python), an optional
CHECK, and whether the mapping is faithful (``rule.faithful``; when it is not,
``rule.finding`` says why). ``[translate] cast = {"pgtype" = "SQLITE DECL"}``
overrides the declaration (and, for numeric and timestamps, the storage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pg2edge.config import TranslateConfig
from pg2edge.translators.codec import arrays, other, scalars, temporal
from pg2edge.translators.findings import Level
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Column

TextEncoder = Callable[[str], Any]
PyEncoder = Callable[[Any], Any]


@dataclass(frozen=True)
class TypeRule:
    decl: str  # SQLite declared type: INTEGER, REAL, TEXT or BLOB
    text: TextEncoder  # PostgreSQL text -> SQLite value (raises Inexact / ValueError)
    python: PyEncoder  # psycopg-loaded Python value -> SQLite value
    faithful: bool = True
    finding: str | None = None  # why the mapping is not faithful (or a note worth reporting)
    code: str = ""  # finding code
    level: Level = Level.WARN
    check: Callable[[str], str] | None = None  # quoted column -> CHECK expression
    copied: bool = True  # False: the column is not created nor copied
    render: str = arrays.STRING  # how values render as JSON array elements
    # column SQL -> PostgreSQL text expression equal to the canonical text of the stored value
    # (validators/canonical.py); None: no exact expression, the validator hashes COPY text in Python
    pg_sql: Callable[[str], str] | None = None
    collation: str | None = None  # SQLite collation of the column (RTRIM for char(n))

    @property
    def declaration(self) -> str:
        """The column's type in CREATE TABLE / ADD COLUMN, with its collation."""
        return f"{self.decl} COLLATE {self.collation}" if self.collation else self.decl

    def pg_normalized_sql(self, column_sql: str) -> str | None:
        """PostgreSQL expression (non-NULL input) giving the canonical text of what the codec stores."""
        return self.pg_sql(column_sql) if self.pg_sql else None


def _pg_text(col: str) -> str:
    return f"{col}::text"


def _pg_output(col: str) -> str:
    """The output function's text (bpchar keeps its padding, which ::text would trim)."""
    return f"concat({col})"


def _pg_bool(col: str) -> str:
    return f"CASE WHEN {col} THEN '1' ELSE '0' END"


def _pg_float(col: str) -> str:
    """REAL values compare by their IEEE bits; NaN is stored as TEXT 'NaN' (see float_text)."""
    return f"CASE WHEN {col} = 'NaN' THEN 'NaN' ELSE encode(float8send(({col})::text::float8), 'hex') END"


def _pg_bytea(col: str) -> str:
    return f"encode({col}, 'hex')"


def _pg_timetz(col: str) -> str:
    return f"CASE WHEN ({col})::text ~ '[+-][0-9][0-9]$' THEN ({col})::text || ':00' ELSE ({col})::text END"


def _pg_timestamptz_iso(col: str) -> str:
    return (f"CASE WHEN isfinite({col}) AND ({col})::text ~ '^[0-9]{{4}}-' AND ({col})::text !~ 'BC$' "
            f"THEN ({col} AT TIME ZONE 'UTC')::text ELSE ({col})::text END")


def _pg_interval(col: str) -> str:
    """Needs the session's IntervalStyle = iso_8601 (the validator sets it)."""
    return f"({col})::text"


def _json_check(col: str) -> str:
    return f"json_valid({col})"


def _bool_check(col: str) -> str:
    return f"{col} IN (0, 1)"


def _integer(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("INTEGER", scalars.int_text, scalars.int_python, render=arrays.NUMBER, pg_sql=_pg_text)


def _numeric(column: Column, options: TranslateConfig) -> TypeRule:
    ps = column.numeric_precision_scale
    if options.numeric == "real":
        return TypeRule("REAL", scalars.numeric_real_text, scalars.numeric_real_python, faithful=False,
                        code="numeric-as-real", render=arrays.NUMBER,
                        finding="numeric stored as REAL (numeric = \"real\"): digits beyond ~15 are rounded "
                                "(each such value is reported)")
    integral = ps is not None and ps[1] == 0 and ps[0] <= 18
    if integral or (options.numeric == "integer" and (ps is None or ps[1] == 0)):
        return TypeRule("INTEGER", scalars.numeric_int_text, scalars.numeric_int_python, render=arrays.NUMBER,
                        pg_sql=_pg_text if integral else None)
    return TypeRule("TEXT", scalars.numeric_text, scalars.numeric_python, render=arrays.RAW, pg_sql=_pg_text)


def _float(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("REAL", scalars.float_text, scalars.float_python, render=arrays.NUMBER, pg_sql=_pg_float)


def _bool(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("INTEGER", scalars.bool_text, scalars.bool_python, check=_bool_check, render=arrays.BOOL,
                    pg_sql=_pg_bool)


def _text(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", scalars.text_as_is, scalars.python_str, pg_sql=_pg_text)


def _char(column: Column, options: TranslateConfig) -> TypeRule:
    """char(n) keeps its blank padding (what PostgreSQL returns); the RTRIM collation makes comparisons,
    ORDER BY, GROUP BY and DISTINCT ignore trailing blanks, as PostgreSQL's bpchar does."""
    return TypeRule("TEXT", scalars.text_as_is, scalars.python_str, pg_sql=_pg_output,
                    collation=None if column.is_array else "RTRIM")


def _bytea(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("BLOB", scalars.bytea_text, scalars.bytea_python, pg_sql=_pg_bytea)


def _uuid(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", scalars.uuid_text, scalars.uuid_python, pg_sql=_pg_text)


def _date(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", temporal.date_text, temporal.date_python, pg_sql=_pg_text)


def _time(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", temporal.time_text, temporal.time_python, pg_sql=_pg_text)


def _timetz(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", temporal.timetz_text, temporal.timetz_python, pg_sql=_pg_timetz)


def _timestamp(column: Column, options: TranslateConfig) -> TypeRule:
    text, python = temporal.timestamp_encoders(options.timestamps, column.type_name)
    decl = "TEXT" if options.timestamps == "iso" else "INTEGER"
    pg_sql = None if decl != "TEXT" else _pg_timestamptz_iso if column.type_name == "timestamptz" else _pg_text
    return TypeRule(decl, text, python, render=arrays.STRING if decl == "TEXT" else arrays.NUMBER, pg_sql=pg_sql)


def _interval(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", temporal.interval_text, temporal.interval_python, level=Level.INFO,
                    pg_sql=_pg_interval, code="interval-text", finding="interval stored as an ISO-8601 duration; SQLite has no "
                    "interval arithmetic")


def _json(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", other.json_text, other.json_python, check=_json_check, render=arrays.RAW,
                    pg_sql=_pg_text)


def _enum(column: Column, options: TranslateConfig) -> TypeRule:
    labels = column.enum_labels or ()

    def check(col: str) -> str:
        quoted = ", ".join("'" + label.replace("'", "''") + "'" for label in labels)
        return f"{col} IN ({quoted})"

    return TypeRule("TEXT", scalars.text_as_is, scalars.python_str, check=None if column.is_array else check,
                    pg_sql=_pg_text)


def _as_text(code: str, finding: str | None = None, *, python: PyEncoder = scalars.python_str,
             level: Level = Level.WARN) -> Callable[[Column, TranslateConfig], TypeRule]:
    def rule(column: Column, options: TranslateConfig) -> TypeRule:
        return TypeRule("TEXT", scalars.text_as_is, python, faithful=finding is None, finding=finding,
                        code=code if finding else "", level=level, pg_sql=_pg_output)

    return rule


def _tsvector(column: Column, options: TranslateConfig) -> TypeRule:
    note = ("tsvector is not copied" + ("; with fts5 = true, index the source text columns in an FTS5 table"
                                         if options.fts5 else "; set fts5 = true to plan full-text search in FTS5"))
    return TypeRule("TEXT", scalars.text_as_is, scalars.python_str, faithful=False, finding=note,
                    code="tsvector-not-copied", copied=False)


def _array(column: Column, options: TranslateConfig) -> TypeRule:
    element = Column(name=column.name, pg_type=column.element_type or "text", type_name=column.element_type or "text",
                     typmod=column.typmod, enum_labels=column.enum_labels)
    rule = rule_for(element, options=options)
    delim = ";" if column.element_type == "box" else ","
    text, python = rule.text, rule.python
    if rule.render == arrays.RAW and element.type_name == "numeric":
        text, python = scalars.numeric_json_text, scalars.numeric_json_python
    enc = arrays.ArrayEncoder(text, python, rule.render, delim)
    return TypeRule("TEXT", enc.text, enc.python, check=_json_check, faithful=rule.faithful and rule.copied,
                    finding=rule.finding, code=rule.code, level=rule.level)


_RANGE = "range stored as its PostgreSQL text; SQLite has no range operators"
_GEOMETRIC = "geometric value stored as its PostgreSQL text; SQLite has no geometric operators"

RULES: dict[str, Callable[[Column, TranslateConfig], TypeRule]] = {
    "int2": _integer, "int4": _integer, "int8": _integer, "oid": _integer, "xid": _integer,
    "numeric": _numeric,
    "float4": _float, "float8": _float,
    "bool": _bool,
    "text": _text, "varchar": _text, "name": _text, "citext": _text, "bpchar": _char, "char": _text,
    "bytea": _bytea,
    "uuid": _uuid,
    "date": _date, "time": _time, "timetz": _timetz,
    "timestamp": _timestamp, "timestamptz": _timestamp,
    "interval": _interval,
    "json": _json, "jsonb": _json,
    "enum": _enum,
    "array": _array,
    "inet": _as_text("inet"), "cidr": _as_text("cidr"), "macaddr": _as_text("macaddr"),
    "macaddr8": _as_text("macaddr8"), "xml": _as_text("xml"), "bit": _as_text("bit"), "varbit": _as_text("varbit"),
    "money": _as_text("money-text", "money is stored as its locale-formatted text (lc_monetary); convert to "
                                    "numeric on the source for arithmetic"),
    "tsvector": _tsvector, "tsquery": _tsvector,
    **{name: _as_text("range-text", _RANGE, python=other.range_python) for name in (
        "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
        "int4multirange", "int8multirange", "nummultirange", "tsmultirange", "tstzmultirange", "datemultirange")},
    **{name: _as_text("geometric-text", _GEOMETRIC) for name in (
        "point", "line", "lseg", "box", "path", "polygon", "circle")},
}


def _affinity(decl: str) -> str:
    """SQLite's affinity rules for a declared type."""
    upper = decl.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _cast_override(column: Column, rule: TypeRule, options: TranslateConfig) -> TypeRule:
    for key in (column.pg_type, column.base_type, column.type_name, column.kind):
        decl = options.cast.get(key)
        if decl is None:
            continue
        affinity = _affinity(decl)
        if column.kind == "numeric" and affinity in ("INTEGER", "REAL", "TEXT"):
            mode = {"INTEGER": "integer", "REAL": "real", "TEXT": "text"}[affinity]
            base = _numeric(column, options.model_copy(update={"numeric": mode}))
            if affinity == "TEXT":
                base = TypeRule("TEXT", scalars.numeric_text, scalars.numeric_python, render=arrays.RAW,
                                pg_sql=_pg_text)
            return replace(base, decl=decl)
        if column.kind in ("timestamp", "timestamptz") and affinity in ("INTEGER", "TEXT"):
            mode = "iso" if affinity == "TEXT" else options.timestamps if options.timestamps != "iso" else "unix"
            return replace(_timestamp(column, options.model_copy(update={"timestamps": mode})), decl=decl)
        note = None if affinity == _affinity(rule.decl) else (
            f"cast override {key} -> {decl}: values are still encoded as {rule.decl}")
        return replace(rule, decl=decl, copied=True, finding=note or rule.finding,
                       pg_sql=rule.pg_sql if note is None else None,
                       code="cast-override" if note else rule.code, faithful=rule.faithful and note is None)
    return rule


def _unknown(column: Column, options: TranslateConfig) -> TypeRule:
    return TypeRule("TEXT", scalars.text_as_is, scalars.python_str, faithful=False, code="unknown-type", pg_sql=_pg_output,
                    finding=f"type {column.pg_type} has no rule; stored as its PostgreSQL text")


def rule_for(column: Column, *, options: TranslateConfig | None = None) -> TypeRule:
    """The type rule of ``column`` (domains resolve to their base type) under ``options``."""
    options = options or TranslateConfig()
    rule = RULES.get(column.kind, _unknown)(column, options)
    return _cast_override(column, rule, options) if options.cast else rule


def column_decl(column: Column, *, options: TranslateConfig | None = None) -> str:
    """The declared SQLite type of ``column``."""
    return rule_for(column, options=options).decl


def quoted_check(rule: TypeRule, name: str) -> str | None:
    return rule.check(quote_ident(name)) if rule.check else None
