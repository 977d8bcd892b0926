"""`translate schema` as one library call, and the plan's renderings (sql, drizzle, json)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import TargetError
from pg2edge.translators.ddl import DdlPlan, apply_ddl, plan_ddl
from pg2edge.translators.drizzle import render_drizzle
from pg2edge.translators.findings import Finding, check_strict
from pg2edge.translators.introspect import introspect
from pg2edge.translators.schema import Schema


@dataclass
class SchemaTranslation:
    text: str
    findings: list[Finding] = field(default_factory=list)
    statements: int = 0


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
