"""Where a PostgreSQL object lands in SQLite: one flat namespace."""

from __future__ import annotations


def sqlite_table_name(schema: str, table: str) -> str:
    """'public.x' -> 'x'; any other schema -> 'schema_x' (SQLite has one namespace per file)."""
    return table if schema == "public" else f"{schema}_{table}"


def sqlite_index_name(schema: str, index: str) -> str:
    """Index names are global in SQLite too: same rule as tables."""
    return sqlite_table_name(schema, index)
