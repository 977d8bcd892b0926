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
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from pg2edge.errors import Pg2EdgeError
from pg2edge.translators.findings import Finding, Level, check_strict
from pg2edge.translators.query import checks, columns
from pg2edge.translators.query.checks import Check
from pg2edge.translators.query.rewrites import REWRITES
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


def translate_statement(tree: exp.Expr, *, column_types: columns.ColumnTypes | None = None) -> tuple[str, list[Finding]]:
    """Translate one parsed PostgreSQL statement; returns (SQLite text, findings)."""
    found: list[Finding] = []
    pg_checks = checks.CHECKS + (checks.column_checks(column_types) if column_types else (checks.numeric_without_types,))
    _run_checks(tree, found, pg_checks)
    rewrites: tuple[Rewrite, ...] = REWRITES
    if column_types:
        rewrites = (columns.numeric_columns_to_real(column_types), *REWRITES)
    out: exp.Expression = tree.copy()  # type: ignore[assignment]  # sqlglot's parsers return Expr; trees are Expressions
    for rewrite in rewrites:
        out = bottom_up(out, rewrite)
    _run_checks(out, found, checks.OUTPUT_CHECKS)
    return _generate(out, found), found


def translate_sql(sql: str, *, strict: bool = False,
                  column_types: dict[str, dict[str, str]] | None = None) -> QueryTranslation:
    """Translate PostgreSQL ``sql`` (one or more statements) to SQLite.

    ``column_types`` maps table -> column -> PostgreSQL type; when given,
    numeric columns used in comparisons, arithmetic, aggregates or ORDER BY
    are read as REAL and enum ordering is reported. In strict mode any
    finding at warn or above raises ``StrictModeError``.
    """
    try:
        trees = [t for t in sqlglot.parse(sql, read="postgres") if t is not None]
    except (ParseError, TokenError) as exc:
        excerpt = " ".join(sql.split())[:80]
        raise QuerySyntaxError(f"cannot parse query {excerpt!r}: {exc}") from exc
    statements: list[str] = []
    findings: list[Finding] = []
    for tree in trees:
        text, found = translate_statement(tree, column_types=column_types)
        statements.append(text)
        findings += [f for f in found if f not in findings]
    log.debug("translated %d statement(s) with %d finding(s)", len(statements), len(findings))
    check_strict(findings, strict=strict)
    return QueryTranslation(sql=";\n".join(statements), findings=findings, statements=tuple(statements))
