"""PostgreSQL expressions in DDL (defaults, CHECKs, index keys/predicates) -> SQLite.

Each expression goes through sqlglot plus the query translator's rewrites
(``translators.query.translate_statement``, which knows the codec's storage),
after our own DDL rewrites below. The result is then prepared by a real
SQLite against a scratch table with the same columns; what SQLite refuses is
dropped WITH a finding, never kept broken and never dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import apsw
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.query import translate_statement
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

# Defaults with a known SQLite spelling (after sqlglot normalized the PostgreSQL text).
UUID4_SQL = ("(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) "
             "|| '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' "
             "|| hex(randomblob(6))))")
NOW_SQL = {"iso": "CURRENT_TIMESTAMP", "unix": "(unixepoch())",
           "unix_ms": "(CAST(unixepoch('subsec') * 1000 AS INTEGER))"}


@dataclass
class Translated:
    sql: str | None  # None: dropped (see findings)
    findings: list[Finding] = field(default_factory=list)


def any_array_to_in(node: exp.Expression) -> exp.Expression:
    """``x = ANY (ARRAY[a, b]::text[])`` (how PostgreSQL prints ``x IN ('a','b')`` on varchar) -> ``x IN (a, b)``."""
    if isinstance(node, exp.EQ) and isinstance(node.expression, exp.Any):
        inner = node.expression.this
        while isinstance(inner, (exp.Paren, exp.Cast)):
            inner = inner.this
        if isinstance(inner, exp.Array):
            return exp.In(this=node.this.copy(), expressions=[e.copy() for e in inner.expressions])
    return node


def strip_text_casts(node: exp.Expression) -> exp.Expression:
    """``x::text`` / ``'a'::varchar`` -> ``x``: every text-like type is plain TEXT in SQLite."""
    if isinstance(node, exp.Cast) and node.to.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR,
                                                       exp.DataType.Type.CHAR, exp.DataType.Type.NCHAR,
                                                       exp.DataType.Type.NVARCHAR):
        return node.this.copy()
    return node


DDL_REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (any_array_to_in, strip_text_casts)


def is_sequence_default(expr: str) -> bool:
    return expr.lstrip("(").lower().startswith("nextval(")


class ExpressionTranslator:
    """Translate the expressions of one table; ``column_types``: column -> PostgreSQL type."""

    def __init__(self, table_label: str, column_types: dict[str, str], *, sqlite_columns: dict[str, str]) -> None:
        self.label = table_label
        self.column_types = column_types
        self._db = apsw.Connection(":memory:")
        cols = ", ".join(f"{quote_ident(c)} {decl}" for c, decl in sqlite_columns.items()) or '"_"'
        self._db.execute(f"CREATE TABLE _t ({cols})")

    def close(self) -> None:
        self._db.close()

    def _to_sqlite(self, pg_expr: str, what: str) -> Translated:
        obj = f"{self.label} {what}"
        try:
            tree = sqlglot.parse_one(f"SELECT {pg_expr} FROM _t", read="postgres")
        except (ParseError, TokenError) as exc:
            return Translated(None, [Finding(Level.WARN, "expression-unparsed", obj,
                                             f"cannot parse {pg_expr!r}: {str(exc).splitlines()[0]}; dropped")])
        for rewrite in DDL_REWRITES:
            tree = tree.transform(rewrite)
        findings: list[Finding] = []
        try:

            sql, found = translate_statement(tree, column_types={"_t": self.column_types})
            for f in found:
                if f.level >= Level.ERROR:
                    return Translated(None, [Finding(Level.WARN, "expression-untranslatable", obj,
                                                     f"{pg_expr!r}: {f.message}; dropped")])
                if f.level >= Level.WARN:
                    findings.append(Finding(f.level, f.code, obj, f"{pg_expr!r}: {f.message}"))
        except ImportError:  # the query translator is not installed: plain sqlglot
            sql = tree.sql(dialect="sqlite")
        select = sqlglot.parse_one(sql, read="sqlite")
        expr_sql = select.expressions[0].sql(dialect="sqlite")
        return Translated(expr_sql, findings)

    def _prepare(self, sql: str) -> str | None:
        try:
            self._db.execute(sql).fetchall()
        except apsw.Error as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def expression(self, pg_expr: str, *, what: str) -> Translated:
        """A row expression (CHECK, index key or predicate, generated column)."""
        out = self._to_sqlite(pg_expr, what)
        if out.sql is None:
            return out
        problem = self._prepare(f"SELECT {out.sql} FROM _t")
        if problem:
            return Translated(None, out.findings + [Finding(
                Level.WARN, "expression-rejected", f"{self.label} {what}",
                f"SQLite cannot run {pg_expr!r} translated as {out.sql!r} ({problem}); dropped")])
        return out

    def default(self, pg_expr: str, *, what: str, timestamps: str = "iso") -> Translated:
        """A DEFAULT expression (constants are encoded by the caller; this handles the rest)."""
        low = pg_expr.strip().lower()
        if low in ("now()", "current_timestamp", "transaction_timestamp()", "statement_timestamp()",
                   "clock_timestamp()", "localtimestamp"):
            return Translated(NOW_SQL[timestamps])
        if low in ("gen_random_uuid()", "uuid_generate_v4()", "public.uuid_generate_v4()"):
            return Translated(UUID4_SQL)
        out = self._to_sqlite(pg_expr, what)
        if out.sql is None:
            return out
        sql = out.sql if out.sql.startswith("(") else f"({out.sql})"
        problem = self._prepare(f"SELECT {sql}")
        if problem:
            return Translated(None, out.findings + [Finding(
                Level.WARN, "default-rejected", f"{self.label} {what}",
                f"SQLite cannot run default {pg_expr!r} translated as {out.sql!r} ({problem}); dropped")])
        return Translated(sql, out.findings)


def constant_text(pg_expr: str) -> str | None:
    """The literal text of a constant default (``'x'::type``, ``42``, ``-1.5``, ``true``), else None."""
    try:
        tree = sqlglot.parse_one(pg_expr, read="postgres")
    except (ParseError, TokenError):
        return None
    while isinstance(tree, (exp.Paren, exp.Cast)):
        tree = tree.this
    if isinstance(tree, exp.Literal):
        return str(tree.this)
    if isinstance(tree, exp.Neg) and isinstance(tree.this, exp.Literal) and not tree.this.is_string:
        return "-" + str(tree.this.this)
    if isinstance(tree, exp.Boolean):
        return "true" if tree.this else "false"
    return None


def sqlite_literal(value: object) -> str:
    """An SQLite literal for an encoded value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NULL"
        return repr(value) if value not in (float("inf"), float("-inf")) else ("9e999" if value > 0 else "-9e999")
    if isinstance(value, (bytes, bytearray)):
        return "X'" + bytes(value).hex() + "'"
    return "'" + str(value).replace("'", "''") + "'"
