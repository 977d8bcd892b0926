"""Schema-change test helpers: the replica's schema against the translation of the source's schema."""

from __future__ import annotations

from typing import Any

import apsw
import psycopg

from pg2edge.config import TranslateConfig
from pg2edge.translators.ddl import plan_table
from pg2edge.translators.introspect import introspect


def schema_differences(dsn: str, db: apsw.Connection, tables: list[str],
                       options: TranslateConfig | None = None) -> list[str]:
    """Every way the replica's tables and indexes differ from what the translator plans for the source now."""
    with psycopg.connect(dsn) as conn:
        schema = introspect(conn, tables=tables)
    translated = {t.qualified for t in schema.tables}
    out: list[str] = []
    names = {t.name for t in schema.tables}
    for missing in sorted(set(tables) - names):
        out.append(f"{missing}: not on the source")
    for table in schema.tables:
        create, indexes, _ = plan_table(table, options=options, translated=translated)
        row = db.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table.name,)).fetchone()
        if row is None or row[0] != create:
            out.append(f"{table.name}: replica {row[0] if row else None!r} != translated {create!r}")
        have = {r[0] for r in db.execute("SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? "
                                         "AND sql IS NOT NULL", (table.name,))}
        if have != set(indexes):
            out.append(f"{table.name} indexes: replica {sorted(have)} != translated {sorted(indexes)}")
    return out


def run_sql(dsn: str, *stmts: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in stmts:
            conn.execute(stmt.encode())


def one(db: apsw.Connection, query: str, *args: Any) -> Any:
    row = db.execute(query, args).fetchone()
    return None if row is None else row[0]
