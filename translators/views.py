"""Views: CREATE VIEW statements in dependency order, each body translated by the query translator.

A view is created only when its whole body translates with no finding at
level warn or above and SQLite accepts it next to the planned tables (checked
on an in-memory database); otherwise it is named with the reason, and so is
every view built on it. The view keeps PostgreSQL's column names (an explicit
column list). Materialized views are named, not created: their rows are a
stored result that only ``REFRESH MATERIALIZED VIEW`` changes on the source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apsw
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Schema, View

log = logging.getLogger(__name__)


def _references(tree: exp.Expression, default_schema: str) -> set[str]:
    """Qualified names of the relations a view body reads (CTE names left out)."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    out = set()
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes):
            continue
        out.add(f"{table.db or default_schema}.{table.name}")
    return out


def _rename_tables(tree: exp.Expression, default_schema: str, ctes: set[str]) -> exp.Expression:
    """``schema.table`` -> the SQLite name (``table`` for public, ``schema_table`` otherwise)."""

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name and not (not node.db and node.name in ctes):
            out = node.copy()
            out.set("db", None)
            out.set("catalog", None)
            out.set("this", exp.to_identifier(sqlite_table_name(node.db or default_schema, node.name), quoted=True))
            if not node.alias and node.db:
                out.set("alias", exp.TableAlias(this=exp.to_identifier(node.name)))
            return out
        return node

    return tree.transform(rename)


def _order(views: Sequence[View], deps: dict[str, set[str]]) -> list[View]:
    by_name = {v.qualified: v for v in views}
    done: dict[str, View] = {}
    visiting: set[str] = set()

    def visit(view: View) -> None:
        if view.qualified in done or view.qualified in visiting:
            return
        visiting.add(view.qualified)
        for dep in sorted(deps.get(view.qualified, ())):
            if dep in by_name:
                visit(by_name[dep])
        visiting.discard(view.qualified)
        done[view.qualified] = view

    for view in views:
        visit(view)
    return list(done.values())


def plan_views(schema: Schema, table_statements: Sequence[str], tables: set[str],
               fts: dict[str, dict[str, object]] | None = None) -> tuple[list[str], list[Finding]]:
    """CREATE VIEW statements (dependency order) and findings; ``tables``: qualified names of planned tables."""
    from pg2edge.translators.query import translate_statement

    statements: list[str] = []
    findings: list[Finding] = []
    column_types = schema.column_types()
    enums = schema.enum_labels()
    parsed: dict[str, exp.Expression] = {}
    deps: dict[str, set[str]] = {}
    for view in schema.views:
        if view.materialized:
            findings.append(Finding(Level.WARN, "materialized-view-not-created", view.qualified,
                                    "a materialized view holds a stored result refreshed on the source; it is not "
                                    "created (replicate the source table it is built from, or create a view)"))
            continue
        try:
            tree = sqlglot.parse_one(view.definition, read="postgres")
        except (ParseError, TokenError) as exc:
            findings.append(Finding(Level.WARN, "view-not-created", view.qualified, f"cannot parse its body: {exc}"))
            continue
        assert isinstance(tree, exp.Expression)
        parsed[view.qualified] = tree
        deps[view.qualified] = _references(tree, view.schema)
    db = apsw.Connection(":memory:")
    try:
        for statement in table_statements:
            db.execute(statement)
        created: set[str] = set()
        for view in _order([v for v in schema.views if v.qualified in parsed], deps):
            missing = sorted(d for d in deps[view.qualified] if d not in tables and d not in created)
            if missing:
                findings.append(Finding(Level.WARN, "view-not-created", view.qualified,
                                        f"reads {', '.join(missing)}, which is not on the replica"))
                continue
            tree = parsed[view.qualified]
            ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
            sql, found = translate_statement(_rename_tables(tree, view.schema, ctes), column_types=column_types,
                                             enums=enums, fts=fts)
            serious = [f for f in found if f.level >= Level.WARN]
            findings += [Finding(f.level, f.code, f"view {view.qualified}: {f.object}", f.message) for f in found
                         if f.level < Level.WARN]
            if serious:
                reasons = "; ".join(f"{f.code} {f.object}" for f in serious)
                findings.append(Finding(Level.WARN, "view-not-created", view.qualified,
                                        f"its body does not translate exactly: {reasons}"))
                continue
            names = ", ".join(quote_ident(name) for name, _ in view.columns)
            statement = (f"CREATE VIEW {quote_ident(sqlite_table_name(view.schema, view.name))}"
                         f"{f' ({names})' if names else ''} AS {sql}")
            try:
                db.execute(statement)
                db.execute(f"SELECT * FROM {quote_ident(sqlite_table_name(view.schema, view.name))} LIMIT 0")
            except apsw.Error as exc:
                findings.append(Finding(Level.WARN, "view-not-created", view.qualified, f"SQLite refused it: {exc}"))
                db.execute(f"DROP VIEW IF EXISTS {quote_ident(sqlite_table_name(view.schema, view.name))}")
                continue
            statements.append(statement)
            created.add(view.qualified)
    finally:
        db.close()
    log.debug("planned %d view(s), %d finding(s)", len(statements), len(findings))
    return statements, findings
