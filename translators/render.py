"""`translate schema` as one library call, and the plan's renderings (sql, drizzle, json)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import TargetError
from pg2edge.translators.ddl import DdlPlan, apply_ddl, plan_ddl, table_order
from pg2edge.translators.findings import Finding, check_strict
from pg2edge.translators.introspect import introspect
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.schema import Schema
from pg2edge.translators.typemap import rule_for


@dataclass
class SchemaTranslation:
    text: str
    findings: list[Finding] = field(default_factory=list)
    statements: int = 0


def _ts_name(name: str) -> str:
    """A TypeScript identifier for a table/column name (camelCase, safe)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    ident = (parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:])) if parts else "t"
    return ident if not ident[0].isdigit() else "_" + ident


def render_drizzle(schema: Schema, *, options: TranslateConfig) -> str:
    """A drizzle-orm ``schema.ts`` (sqlite-core) for the planned tables."""
    ordered = table_order(schema.tables)
    names: dict[str, str] = {}
    for table in ordered:
        base = _ts_name(sqlite_table_name(table.schema, table.name))
        name = base
        while name in names.values():
            name += "_"
        names[table.qualified] = name
    used: set[str] = set()
    body = []
    for table in ordered:
        lines = []
        fk_of = {fk.columns[0]: fk for fk in table.foreign_keys
                 if len(fk.columns) == 1 and fk.ref_qualified in names and options.foreign_keys == "keep"}
        for col in table.columns:
            rule = rule_for(col, options=options)
            if not rule.copied:
                continue
            kind = {"INTEGER": "integer", "REAL": "real", "BLOB": "blob"}.get(rule.decl.upper(), "text")
            used.add(kind)
            expr = f"{kind}({json.dumps(col.name)})"
            if table.primary_key == (col.name,):
                expr += ".primaryKey()"
            if col.not_null and table.primary_key != (col.name,):
                expr += ".notNull()"
            fk = fk_of.get(col.name)
            if fk is not None:
                expr += f".references(() => {names[fk.ref_qualified]}.{_ts_name(fk.ref_columns[0])})"
            lines.append(f"  {_ts_name(col.name)}: {expr},")
        body.append(f"export const {names[table.qualified]} = sqliteTable("
                    f"{json.dumps(sqlite_table_name(table.schema, table.name))}, {{\n" + "\n".join(lines) + "\n});\n")
    head = f"import {{ sqliteTable, {', '.join(sorted(used | {'text'}))} }} from \"drizzle-orm/sqlite-core\";\n\n"
    return head + "\n".join(body)


def render_json(schema: Schema, plan: DdlPlan) -> str:
    def default(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)  # type: ignore[arg-type]
        return str(obj)

    doc = {"tables": [dataclasses.asdict(t) for t in schema.tables],
           "enums": [dataclasses.asdict(e) for e in schema.enums],
           "domains": [dataclasses.asdict(d) for d in schema.domains],
           "views": [dataclasses.asdict(v) for v in schema.views],
           "statements": plan.statements, "findings": [f.as_dict() for f in plan.findings]}
    return json.dumps(doc, indent=2, default=default) + "\n"


def translate_schema(dsn: str, *, schemas: Sequence[str] = ("public",), tables: list[str] | None = None,
                     options: TranslateConfig | None = None, output_format: str = "sql",
                     target: str | Path | None = None, strict: bool = False) -> SchemaTranslation:
    """Introspect ``dsn``, plan the DDL, render it; with ``target``, execute it into that SQLite file."""


    options = options or TranslateConfig()
    with dsnlib.connect(dsn, autocommit=True) as conn:
        schema = introspect(conn, schemas=tuple(schemas), tables=tables)
    plan = plan_ddl(schema, options=options)
    check_strict(plan.findings, strict=strict)
    if output_format == "drizzle":
        text = render_drizzle(schema, options=options)
    elif output_format == "json":
        text = render_json(schema, plan)
    else:
        text = plan.sql
    if target is not None:
        try:
            db = apsw.Connection(str(target))
        except apsw.Error as exc:
            raise TargetError(f"cannot open SQLite file {target}: {exc}") from exc
        try:
            apply_ddl(db, plan)
        finally:
            db.close()
    return SchemaTranslation(text=text, findings=plan.findings, statements=len(plan.statements))
