"""Checks: what does not translate exactly, as named findings. One table, pure functions.

``CHECKS`` run on the PostgreSQL tree (they see the query as written);
``OUTPUT_CHECKS`` run on the rewritten tree (they see what is left that
SQLite cannot run). Each returns a Finding or None.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.query import columns, temporal
from pg2edge.translators.query.infer import TypeContext
from pg2edge.translators.query.tree import excerpt, literal_text

Check = Callable[[exp.Expression], Finding | None]


def _finding(level: Level, code: str, node: exp.Expr, message: str) -> Finding:
    return Finding(level, code, excerpt(node), message)


def time_zone_conversion(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.AtTimeZone):
        zone = literal_text(node.args.get("zone"))
        if zone is None or zone.lower() not in temporal.UTC_ZONES:
            return _finding(Level.ERROR, "timezone", node,
                            f"AT TIME ZONE {zone or 'expression'}: SQLite has no time zone database; values are UTC text")
    return None


def ilike_ascii_only(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.ILike):
        return _finding(Level.INFO, "ilike_ascii", node,
                        "ILIKE became LIKE: SQLite folds case for ASCII letters only, not for other unicode letters")
    return None


def least_greatest_nulls(node: exp.Expression) -> Finding | None:
    if isinstance(node, (exp.Least, exp.Greatest)):
        return _finding(Level.INFO, "least_greatest_nulls", node,
                        "scalar min()/max() return NULL if any argument is NULL; wrapped in coalesce() to ignore NULLs like PostgreSQL")
    return None


def array_parameter(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.Any) and isinstance(node.this.unnest(), (exp.Placeholder, exp.Parameter)):
        return _finding(Level.WARN, "array_parameter", node.parent or node,
                        "= ANY(param) became IN (SELECT value FROM json_each(?)): bind the list as JSON text, e.g. json.dumps(values)")
    return None


def any_operator(node: exp.Expression) -> Finding | None:
    if isinstance(node.args.get("expression"), exp.Any) and not isinstance(node, exp.EQ):
        return _finding(Level.ERROR, "unsupported_operator", node, "only = ANY(...) and <> ALL(...) have an SQLite form (IN / NOT IN)")
    return None


def full_text_search(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.MatchAgainst) or (
            isinstance(node, exp.Anonymous) and str(node.this).lower() in {"to_tsvector", "to_tsquery", "plainto_tsquery", "websearch_to_tsquery", "ts_rank"}):
        return _finding(Level.ERROR, "fulltext", node,
                        "PostgreSQL full-text search has no SQLite equivalent here; use an FTS5 table and MATCH")
    return None


_TS_FUNCTIONS = frozenset({"to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
                           "ts_rank", "ts_rank_cd", "ts_headline", "setweight", "tsvector_to_array"})


def full_text_beside_fts5(node: exp.Expression) -> Finding | None:
    """With FTS5 indexes known: text-search functions outside ``x @@ q`` (ranking, headlines) have no form."""
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in _TS_FUNCTIONS and \
            node.find_ancestor(exp.MatchAgainst) is None:
        return _finding(Level.ERROR, "fulltext", node,
                        f"{str(node.this).lower()}() has no FTS5 form here (only vector @@ query is translated)")
    return None


_OPERATORS: dict[type[exp.Expression], str] = {
    exp.ArrayContainsAll: "@>", exp.ArrayContainedBy: "<@", exp.ArrayOverlaps: "&&",
    exp.JSONBContains: "@>", exp.JSONBContainsTopKey: "?", exp.JSONBContainsAnyTopKeys: "?|",
    exp.JSONBContainsAllTopKeys: "?&", exp.RegexpLike: "~", exp.RegexpILike: "~*", exp.SimilarTo: "SIMILAR TO",
}


def unsupported_operator(node: exp.Expression) -> Finding | None:
    op = _OPERATORS.get(type(node))
    if op:
        return _finding(Level.WARN, "unsupported_operator", node, f"operator {op} has no SQLite equivalent (JSON/arrays are stored as text)")
    return None


def session_time_zone(node: exp.Expression) -> Finding | None:
    if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)) or (
            isinstance(node, exp.Extract) and (literal_text(node.this) or "").upper() != "EPOCH"):
        return _finding(Level.INFO, "utc_fields", node,
                        "fields are taken in UTC; PostgreSQL uses the session TimeZone for timestamptz")
    return None


def distinct_on_star(node: exp.Expression) -> Finding | None:
    distinct = node.args.get("distinct") if isinstance(node, exp.Select) else None
    if distinct is not None and distinct.args.get("on") and any(
            isinstance(p, exp.Star) or (isinstance(p, exp.Column) and p.is_star) for p in node.expressions):
        return _finding(Level.WARN, "distinct_on_star", node,
                        "DISTINCT ON with *: the rewritten query also returns its helper columns (_row_number, _orderN)")
    return None


def string_agg_distinct(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.GroupConcat) and isinstance(node.this, exp.Distinct) and literal_text(node.args.get("separator")) != ",":
        return _finding(Level.ERROR, "unsupported_aggregate", node,
                        "string_agg(DISTINCT x, sep): SQLite's DISTINCT aggregates take one argument (only ',' works)")
    return None


CHECKS: tuple[Check, ...] = (
    time_zone_conversion, ilike_ascii_only, least_greatest_nulls, array_parameter, any_operator,
    full_text_search, unsupported_operator, session_time_zone, distinct_on_star,
    string_agg_distinct,
)


def column_checks(column_types: columns.ColumnTypes, context: TypeContext | None = None) -> tuple[Check, ...]:
    """Checks that need the column types: numeric read as REAL, enum ordering."""

    def numeric_as_real(node: exp.Expression) -> Finding | None:
        if isinstance(node, exp.Column) and columns.in_numeric_context(node):
            pg_type = columns.column_type(node, column_types)
            if pg_type and columns.is_numeric_type(pg_type):
                return Finding(Level.INFO, "numeric_as_real", node.sql(dialect="postgres"),
                               f"{pg_type} is stored as exact TEXT; compared/computed as REAL (double precision, ~15 digits)")
        return None

    def enum_order(node: exp.Expression) -> Finding | None:
        if isinstance(node, exp.Column) and isinstance(node.parent, columns.ORDER_CONTEXTS):
            pg_type = columns.column_type(node, column_types)
            if pg_type and columns.is_user_defined_type(pg_type) and (
                    context is None or context.enum_labels(pg_type) is None):
                return Finding(Level.WARN, "enum_order", node.sql(dialect="postgres"),
                               f"{pg_type} is stored as its label: SQLite orders/compares it by label text, not by enum position")
        return None

    def text_collation(node: exp.Expression) -> Finding | None:
        if isinstance(node, exp.Column) and isinstance(node.parent, exp.Ordered):
            pg_type = columns.column_type(node, column_types)
            if pg_type and pg_type.lower().startswith(("text", "character", "varchar", "citext")):
                return Finding(Level.INFO, "text_collation", node.sql(dialect="postgres"),
                               "SQLite orders text by code point (BINARY); PostgreSQL by the database collation")
        return None

    def boolean_output(node: exp.Expression) -> Finding | None:
        """A boolean result column comes back as 1/0 (its storage), not true/false."""
        if isinstance(node, exp.Select) and node.parent is None:
            for projection in node.expressions:
                inner = projection.unalias()
                pg_type = columns.column_type(inner, column_types) if isinstance(inner, exp.Column) else None
                if (pg_type or "").lower().startswith("bool") or isinstance(inner, (exp.Predicate, exp.Not)):
                    return Finding(Level.INFO, "boolean_output", projection.sql(dialect="postgres"),
                                   "a boolean comes back as 1/0 from SQLite (drizzle's integer({ mode: \"boolean\" }) "
                                   "maps it to true/false)")
        return None

    return (numeric_as_real, enum_order, text_collation, boolean_output)


_COMPARISONS = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


def numeric_without_types(node: exp.Expression) -> Finding | None:
    """Without column types, a column compared with a number may be numeric TEXT compared as text."""
    if isinstance(node, _COMPARISONS) and isinstance(node.this, exp.Column):
        if any(isinstance(a, exp.Literal) and not a.is_string for a in node.args.values()):
            return _finding(Level.INFO, "numeric_text_compare", node,
                            "if this is a numeric column it is stored as TEXT; pass column_types to read it as REAL")
    return None


# --- on the rewritten (SQLite) tree ---------------------------------------------

SQLITE_FUNCTIONS = frozenset("""
abs changes char coalesce concat concat_ws format glob hex ifnull iif if instr last_insert_rowid length like
likelihood likely lower ltrim max min nullif octet_length printf quote random randomblob replace round rtrim
sign soundex substr substring trim typeof unhex unicode unlikely upper zeroblob date time datetime julianday
unixepoch strftime timediff avg count group_concat string_agg sum total json json_array json_array_length
json_error_position json_extract json_insert json_object json_patch json_remove json_replace json_set json_type
json_valid json_quote json_group_array json_group_object json_each json_tree jsonb acos acosh asin asinh atan
atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2 mod pi pow power radians sin sinh sqrt
tan tanh trunc row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
nth_value cast exists in values
""".split())
_LEADING_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def unsupported_function(node: exp.Expression) -> Finding | None:
    if not isinstance(node, exp.Func) or isinstance(node, (exp.Cast, exp.Case, exp.If, exp.Exists)):
        return None
    m = _LEADING_CALL.match(node.sql(dialect="sqlite"))
    if m and m.group(1).lower() not in SQLITE_FUNCTIONS:
        return Finding(Level.WARN, "unsupported_function", m.group(1).lower(),
                       f"{m.group(1).lower()}() is not an SQLite function; no rewrite exists for it")
    return None


def leftover_fulltext(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.MatchAgainst):
        return Finding(Level.ERROR, "fulltext", node.sql(dialect="postgres")[:80],
                       "full-text search with no FTS5 form here (see the other findings)")
    return None


def leftover_construct(node: exp.Expression) -> Finding | None:
    if isinstance(node, exp.Interval) or (isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.INTERVAL)):
        return Finding(Level.ERROR, "unsupported_interval", node.sql(dialect="postgres"),
                       "only interval literals added to/subtracted from a timestamp are translated")
    if isinstance(node, (exp.Extract, exp.TimestampTrunc, exp.DateTrunc)):
        return Finding(Level.ERROR, "unsupported_date_part", node.sql(dialect="postgres"),
                       "this date part / truncation unit has no SQLite form")
    if isinstance(node, exp.Cast) and not node.to.is_type("real", "integer", "text", "blob", "numeric"):
        return Finding(Level.ERROR, "unsupported_cast", node.sql(dialect="postgres"),
                       f"cast to {node.to.sql(dialect='postgres')} has no SQLite storage form")
    return None


OUTPUT_CHECKS: tuple[Check, ...] = (unsupported_function, leftover_construct, leftover_fulltext)
