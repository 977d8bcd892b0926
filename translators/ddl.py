"""Plan SQLite DDL from the schema model: CREATE TABLE in FK order, then indexes.

Planning returns the statements (so ``--dry-run`` prints exactly what would
run and tests check the exact SQL); ``apply_ddl`` runs them in one transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from pg2edge.config import TranslateConfig
from pg2edge.errors import TargetError
from pg2edge.translators.codec.base import Inexact
from pg2edge.translators.expressions import ExpressionTranslator, constant_text, is_sequence_default, sqlite_literal
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.naming import sqlite_index_name, sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.recorded import SourceTypes, write_source_types
from pg2edge.translators.schema import Column, Schema, Table
from pg2edge.translators.typemap import TypeRule, rule_for

log = logging.getLogger(__name__)

__all__ = ["DdlPlan", "apply_ddl", "plan_ddl", "plan_table", "table_order"]

_INTEGERS = ("int2", "int4", "int8")
# drizzle-kit 0.31 reads SQLite CHECKs with a regex (`CHECK\s*\(`) into ONE map shared by every table, so
# `drizzle-kit push` would rebuild every table of a replica with a CHECK anywhere. The comment keeps the
# constraints (SQLite enforces them as usual) out of that reader; docs/translate-schema.md explains it.
CHECK = "CHECK /* pg2edge */"


@dataclass
class DdlPlan:
    statements: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    source_types: SourceTypes | None = None  # recorded into the replica by apply_ddl

    @property
    def sql(self) -> str:
        return "".join(s + ";\n" for s in self.statements)


def table_order(tables: tuple[Table, ...] | list[Table]) -> list[Table]:
    """Tables with every referenced table first (stable; cycles keep source order)."""
    by_name = {t.qualified: t for t in tables}
    done: dict[str, Table] = {}
    visiting: set[str] = set()

    def visit(table: Table) -> None:
        if table.qualified in done or table.qualified in visiting:
            return
        visiting.add(table.qualified)
        for fk in table.foreign_keys:
            parent = by_name.get(fk.ref_qualified)
            if parent is not None and parent is not table:
                visit(parent)
        visiting.discard(table.qualified)
        done[table.qualified] = table

    for table in tables:
        visit(table)
    return list(done.values())


class _TablePlanner:
    def __init__(self, table: Table, options: TranslateConfig, planned: set[str]) -> None:
        self.table = table
        self.options = options
        self.planned = planned
        self.findings: list[Finding] = []
        self.rules: dict[str, TypeRule] = {}
        for col in table.columns:
            rule = rule_for(col, options=options)
            obj = f"{table.qualified}.{col.name}"
            if rule.finding:
                self.findings.append(Finding(rule.level if rule.copied else Level.WARN, rule.code, obj,
                                             f"{col.pg_type}: {rule.finding}"))
            if rule.copied:
                self.rules[col.name] = rule
        self.expr = ExpressionTranslator(
            table.qualified, {c.name: c.base_type for c in table.columns},
            sqlite_columns={name: rule.decl for name, rule in self.rules.items()})

    def _rowid_alias(self, col: Column) -> bool:
        pk = self.table.primary_key
        return (len(pk) == 1 and pk[0] == col.name and col.type_name in _INTEGERS and not col.is_array
                and self.rules[col.name].decl.upper() == "INTEGER")

    def _default(self, col: Column, rule: TypeRule) -> str | None:
        text = col.default if col.default is not None else (col.domain.default if col.domain else None)
        obj = f"{self.table.qualified}.{col.name}"
        if col.identity or (text is not None and is_sequence_default(text)):
            if not self._rowid_alias(col):
                self.findings.append(Finding(Level.INFO, "sequence-default", obj,
                                             f"default from sequence {col.sequence or text} is not recreated; "
                                             "values come from the source"))
            return None
        if text is None:
            return None
        literal = constant_text(text)
        if literal is not None:
            try:
                value = rule.text(literal)
            except Inexact as exc:
                value = exc.substitute
                self.findings.append(Finding(Level.WARN, exc.code, obj, f"default {text!r}: {exc.reason}"))
            except (ValueError, TypeError, IndexError, KeyError, OverflowError):
                value = None
                literal = None
            if literal is not None:
                return sqlite_literal(value)
        out = self.expr.default(text, what=f"column {col.name} default", timestamps=self.options.timestamps)
        self.findings += out.findings
        return out.sql

    def _column(self, col: Column) -> str:
        rule = self.rules[col.name]
        parts = [quote_ident(col.name), rule.declaration]
        if self._rowid_alias(col):
            parts.append("PRIMARY KEY")
        if col.generated is not None:
            out = self.expr.expression(col.generated, what=f"column {col.name} generated")
            self.findings += out.findings
            if out.sql is None:
                self.findings.append(Finding(Level.WARN, "generated-dropped", f"{self.table.qualified}.{col.name}",
                                             "generated column has no SQLite expression: created as a plain "
                                             "column that is not copied (NULL)"))
            else:
                parts.append(f"GENERATED ALWAYS AS ({out.sql}) VIRTUAL")
        if col.not_null or (col.domain and col.domain.not_null):
            parts.append("NOT NULL")
        default = None if col.generated is not None else self._default(col, rule)
        if default is not None:
            parts.append(f"DEFAULT {default}")
        if rule.check:
            parts.append(f"{CHECK} ({rule.check(quote_ident(col.name))})")
        for expr in col.domain.checks if col.domain else ():
            assert col.domain is not None  # only iterated when there is a domain
            replaced = _replace_value(expr, col.name)
            out = self.expr.expression(replaced, what=f"column {col.name} domain {col.domain.name} check")
            self.findings += out.findings
            if out.sql is not None:
                parts.append(f"{CHECK} ({out.sql})")
        return " ".join(parts)

    def create_table(self) -> str:
        t = self.table
        lines = [self._column(c) for c in t.columns if c.name in self.rules]
        pk_alias = any(self._rowid_alias(c) for c in t.columns if c.name in self.rules)
        if t.primary_key and not pk_alias:
            lines.append(f"PRIMARY KEY ({self._cols(t.primary_key)})")
        for check in t.checks:
            out = self.expr.expression(check.expression, what=f"check {check.name}")
            self.findings += out.findings
            if out.sql is not None:
                lines.append(f"CONSTRAINT {quote_ident(check.name)} {CHECK} ({out.sql})")
        for fk in t.foreign_keys:
            lines.extend(self._foreign_key(fk))
        if not t.primary_key:
            self.findings.append(Finding(Level.WARN, "no-primary-key", t.qualified,
                                         "table has no primary key: CDC updates/deletes need REPLICA IDENTITY FULL"))
        if t.partitioned:
            self.findings.append(Finding(Level.INFO, "partitions-folded", t.qualified,
                                         f"partitioned table: {len(t.partitions)} partition(s) folded into one "
                                         "SQLite table"))
        body = ",\n  ".join(lines)
        suffix = " STRICT" if self.options.strict_tables else ""
        return f"CREATE TABLE {quote_ident(sqlite_table_name(t.schema, t.name))} (\n  {body}\n){suffix}"

    def _cols(self, names: tuple[str, ...]) -> str:
        return ", ".join(quote_ident(n) for n in names)

    def _foreign_key(self, fk: Any) -> list[str]:
        obj = f"{self.table.qualified}.{fk.name}"
        if self.options.foreign_keys == "drop":
            self.findings.append(Finding(Level.INFO, "foreign-key-dropped", obj, "foreign_keys = \"drop\""))
            return []
        if fk.ref_qualified not in self.planned:
            self.findings.append(Finding(Level.WARN, "foreign-key-dropped", obj,
                                         f"references {fk.ref_qualified}, which is not translated"))
            return []
        if not all(c in self.rules for c in fk.columns):
            self.findings.append(Finding(Level.WARN, "foreign-key-dropped", obj, "a key column is not copied"))
            return []
        sql = (f"CONSTRAINT {quote_ident(fk.name)} FOREIGN KEY ({self._cols(fk.columns)}) REFERENCES "
               f"{quote_ident(sqlite_table_name(fk.ref_schema, fk.ref_table))} ({self._cols(fk.ref_columns)})")
        if fk.on_delete != "NO ACTION":
            sql += f" ON DELETE {fk.on_delete}"
        if fk.on_update != "NO ACTION":
            sql += f" ON UPDATE {fk.on_update}"
        if fk.deferrable:
            sql += " DEFERRABLE INITIALLY " + ("DEFERRED" if fk.initially_deferred else "IMMEDIATE")
        return [sql]

    def indexes(self) -> list[str]:
        """UNIQUE constraints (as named unique indexes, which drizzle-kit and SQLite both see by name), then indexes."""
        t = self.table
        out = [f"CREATE UNIQUE INDEX {quote_ident(sqlite_index_name(t.schema, u.name))} ON "
               f"{quote_ident(sqlite_table_name(t.schema, t.name))} ({self._cols(u.columns)})"
               for u in t.uniques if all(c in self.rules for c in u.columns)]
        for index in t.indexes:
            obj = f"{t.qualified} index {index.name}"
            if index.method not in ("btree", "hash"):
                self.findings.append(Finding(Level.WARN, "index-method", obj,
                                             f"{index.method} index has no SQLite equivalent; not created"))
                continue
            keys: list[str] = []
            for i, key in enumerate(index.keys):
                is_expr = index.expressions[i] if i < len(index.expressions) else False
                if is_expr:
                    translated = self.expr.expression(key, what=f"index {index.name} key")
                    self.findings += translated.findings
                    if translated.sql is None:
                        keys = []
                        break
                    sql = f"({translated.sql})"
                elif key in self.rules:
                    sql = quote_ident(key)
                else:
                    keys = []
                    break
                if i < len(index.descending) and index.descending[i]:
                    sql += " DESC"
                keys.append(sql)
            if not keys:
                self.findings.append(Finding(Level.WARN, "index-dropped", obj, "a key cannot be translated"))
                continue
            stmt = (f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {quote_ident(sqlite_index_name(t.schema, index.name))}"
                    f" ON {quote_ident(sqlite_table_name(t.schema, t.name))} ({', '.join(keys)})")
            if index.predicate:
                pred = self.expr.expression(index.predicate, what=f"index {index.name} predicate")
                self.findings += pred.findings
                if pred.sql is None:
                    self.findings.append(Finding(Level.WARN, "index-dropped", obj, "the predicate cannot be translated"))
                    continue
                stmt += f" WHERE {pred.sql}"
            out.append(stmt)
        return out


def _replace_value(expr: str, column: str) -> str:
    """A domain CHECK uses VALUE for the column: substitute the (PostgreSQL-quoted) column name."""

    ident = '"' + column.replace('"', '""') + '"'
    return re.sub(r"\bVALUE\b", lambda _m: ident, expr)


def plan_ddl(schema: Schema, *, options: TranslateConfig | None = None) -> DdlPlan:
    """The SQLite statements for ``schema``: tables in FK dependency order, then their indexes."""
    options = options or TranslateConfig()
    plan = DdlPlan()
    ordered = table_order(schema.tables)
    planned = {t.qualified for t in ordered}
    index_sql: list[str] = []
    for table in ordered:
        planner = _TablePlanner(table, options, planned)
        try:
            plan.statements.append(planner.create_table())
            index_sql += planner.indexes()
        finally:
            planner.expr.close()
        plan.findings += planner.findings
    plan.statements += index_sql
    fts: dict[str, dict[str, object]] = {}
    if options.fts5:
        from pg2edge.translators.fts import plan_fts

        for table in ordered:
            text_columns = {c.name for c in table.columns if c.type_name != "tsvector"
                            and rule_for(c, options=options).decl == "TEXT"}
            index, statements, found = plan_fts(table, text_columns)
            plan.statements += statements
            plan.findings += found
            if index is not None:
                fts[index.table] = index.as_dict()
    if schema.views:
        from pg2edge.translators.views import plan_views

        view_sql, view_findings = plan_views(schema, plan.statements, planned, fts)
        plan.statements += view_sql
        plan.findings += view_findings
    plan.source_types = SourceTypes(tables=schema.column_types(), enums=schema.enum_labels(),
                                    timestamps=options.timestamps, numeric=options.numeric, fts=fts)
    log.debug("planned %d statement(s), %d finding(s)", len(plan.statements), len(plan.findings))
    return plan


def plan_table(table: Table, *, options: TranslateConfig | None = None,
               translated: set[str] | frozenset[str] = frozenset()) -> tuple[str, list[str], list[Finding]]:
    """One table's CREATE TABLE, its CREATE INDEX statements and findings (``translated``: the qualified
    names of the other tables on the target, which its foreign keys may reference)."""
    planner = _TablePlanner(table, options or TranslateConfig(), {*translated, table.qualified})
    try:
        create = planner.create_table()
        return create, planner.indexes(), planner.findings
    finally:
        planner.expr.close()


def apply_ddl(connection: Any, plan: DdlPlan) -> None:
    """Run the plan in one transaction on an apsw connection, recording the source types with it."""
    with connection:
        if plan.source_types is not None:
            write_source_types(connection, plan.source_types)
        for statement in plan.statements:
            try:
                connection.execute(statement)
            except Exception as exc:

                raise TargetError(f"SQLite refused: {statement.splitlines()[0]} ...: {type(exc).__name__}: {exc}") from exc
