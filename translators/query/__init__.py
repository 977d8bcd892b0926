"""Translate PostgreSQL queries to SQLite for the codec's storage choices.

sqlglot parses (``read="postgres"``) and prints (``dialect="sqlite"``); between
the two, our own rewrites (``rewrites.REWRITES``) fix what sqlglot leaves
wrong for SQLite and for how values are stored (timestamps as UTC text,
booleans as 0/1, numeric as exact text, JSON and arrays as JSON text).
What cannot be translated exactly is reported as a named Finding; strict mode
raises on any finding at level warn or above.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from pg2edge.errors import Pg2EdgeError
from pg2edge.translators.findings import Finding, Level, check_strict
from pg2edge.translators.query import checks, columns
from pg2edge.translators.query.checks import Check
from pg2edge.translators.query.enums import enum_ordering
from pg2edge.translators.query.fulltext import fulltext_to_fts5
from pg2edge.translators.query.infer import TypeContext
from pg2edge.translators.query.intervals import temporal_arithmetic
from pg2edge.translators.query.numerics import exact_numeric_sums
from pg2edge.translators.query.rewrites import REWRITES
from pg2edge.translators.query.texts import text_semantics
from pg2edge.translators.query.tree import Rewrite, bottom_up

__all__ = ["QueryTranslation", "QuerySyntaxError", "translate_sql", "translate_statement"]

log = logging.getLogger(__name__)


class QuerySyntaxError(Pg2EdgeError):
    """The PostgreSQL query could not be parsed."""


@dataclass(frozen=True)
class QueryTranslation:
    """SQLite text (statements joined by ';\\n') and the findings, in order, without duplicates."""

    sql: str
    findings: list[Finding] = field(default_factory=list)
    statements: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Finding]:
        """Findings at level error: the SQL would give a different answer (or none) on SQLite."""
        return [f for f in self.findings if f.level >= Level.ERROR]


def _run_checks(tree: exp.Expr, found: list[Finding], table: tuple[Check, ...]) -> None:
    for node in tree.walk():
        for check in table:
            finding = check(node)  # type: ignore[arg-type]  # sqlglot's walk() yields Expr; the nodes are Expressions
            if finding is not None and finding not in found:
                found.append(finding)


def _generate(tree: exp.Expression, found: list[Finding]) -> str:
    generator = sqlglot.Dialect.get_or_raise("sqlite").generator(unsupported_level=ErrorLevel.IGNORE)
    sql = generator.generate(tree)
    for message in generator.unsupported_messages:
        finding = Finding(Level.WARN, "unsupported_construct", sql[:80], message)
        if finding not in found:
            found.append(finding)
    return sql


def translate_statement(tree: exp.Expr, *, column_types: columns.ColumnTypes | None = None,
                        enums: Mapping[str, Sequence[str]] | None = None,
                        fts: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, list[Finding]]:
    """Translate one parsed PostgreSQL statement; returns (SQLite text, findings)."""
    found: list[Finding] = []
    context = TypeContext(columns=column_types or {}, enums={k.lower(): tuple(v) for k, v in (enums or {}).items()},
                          fts=fts or {})
    pg_checks = tuple(checks.full_text_beside_fts5 if fts and c is checks.full_text_search else c
                      for c in checks.CHECKS)
    pg_checks += (checks.column_checks(column_types, context) if column_types else (checks.numeric_without_types,))
    _run_checks(tree, found, pg_checks)
    semantic: tuple[Rewrite, ...] = (fulltext_to_fts5(context, found), temporal_arithmetic(context, found),
                                     enum_ordering(context, found), text_semantics(context, found))
    if column_types:
        semantic = (columns.numeric_columns_to_real(column_types), exact_numeric_sums(context, found), *semantic)
    rewrites: tuple[Rewrite, ...] = (*semantic, *REWRITES)
    out: exp.Expression = tree.copy()  # type: ignore[assignment]  # sqlglot's parsers return Expr; trees are Expressions
    for rewrite in rewrites:
        out = bottom_up(out, rewrite)
    _run_checks(out, found, checks.OUTPUT_CHECKS)
    return _generate(out, found), found


def _unix_timestamps(tree: exp.Expr, column_types: columns.ColumnTypes, mode: str) -> list[Finding]:
    for column in tree.find_all(exp.Column):
        pg_type = columns.column_type(column, column_types) or ""
        if pg_type.startswith("timestamp"):
            return [Finding(Level.ERROR, "timestamps_mode", column.sql(dialect="postgres"),
                            f"the replica stores timestamps as {mode} integers; the translation assumes ISO text "
                            "(timestamps = \"iso\")")]
    return []


def translate_sql(sql: str, *, strict: bool = False,
                  column_types: dict[str, dict[str, str]] | None = None,
                  enums: Mapping[str, Sequence[str]] | None = None,
                  fts: Mapping[str, Mapping[str, Any]] | None = None,
                  timestamps: str = "iso") -> QueryTranslation:
    """Translate PostgreSQL ``sql`` (one or more statements) to SQLite.

    ``column_types`` maps table -> column -> PostgreSQL type; when given,
    numeric columns used in comparisons, arithmetic, aggregates or ORDER BY
    are read as REAL, timestamps/dates/intervals get PostgreSQL's arithmetic
    and char(n) columns their blank-trimming. ``enums`` maps an enum type name
    to its labels in declaration order (ORDER BY and comparisons follow it);
    ``fts`` maps a table to its FTS5 index (``SourceTypes.fts``, made with
    ``fts5 = true``), so ``@@`` becomes an FTS5 MATCH. ``timestamps`` is the
    replica's storage mode: the translation assumes ``iso`` text, so a query
    reading a timestamp column of a ``unix``/``unix_ms`` replica is an error finding.
    In strict mode any finding at warn or above raises ``StrictModeError``.
    Check ``result.errors``: SQL with an error finding must not be run.
    """
    try:
        trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
    except (ParseError, TokenError) as exc:
        excerpt = " ".join(sql.split())[:80]
        raise QuerySyntaxError(f"cannot parse query {excerpt!r}: {exc}") from exc
    statements: list[str] = []
    findings: list[Finding] = []
    for tree in trees:
        text, found = translate_statement(tree, column_types=column_types, enums=enums, fts=fts)
        if timestamps != "iso" and column_types:
            found += _unix_timestamps(tree, column_types, timestamps)
        statements.append(text)
        findings += [f for f in found if f not in findings]
    log.debug("translated %d statement(s) with %d finding(s)", len(statements), len(findings))
    check_strict(findings, strict=strict)
    return QueryTranslation(sql=";\n".join(statements), findings=findings, statements=tuple(statements))
