"""PostgreSQL column types of the public tables, for ``translate_sql(column_types=...)`` in tests."""

from __future__ import annotations

from typing import Any

import psycopg

COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typtype
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""


def column_types(conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    """table -> column -> PostgreSQL type (format_type), for translate_sql(column_types=...)."""
    out: dict[str, dict[str, str]] = {}
    for table, column, pg_type, _ in conn.execute(COLUMNS_SQL):
        out.setdefault(table, {})[column] = pg_type
    return out
