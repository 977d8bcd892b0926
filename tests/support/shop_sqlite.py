"""TEST HELPER ONLY: copy the sample shop from PostgreSQL into an SQLite file.

Stand-in for the real value codec (owned by the schema/codec work in
translators/), to be replaced by it once merged. It uses the same storage
choices the query translator assumes:

uuid -> lower-case text; numeric -> canonical PostgreSQL text;
timestamptz/timestamp -> UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]'; date -> 'YYYY-MM-DD';
bool -> 0/1; jsonb/json/arrays -> JSON text; enum -> label; inet -> text.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from translators.quoting import quote_ident

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


def _affinity(pg_type: str) -> str:
    t = pg_type.lower()
    if t in ("bigint", "integer", "smallint", "boolean"):
        return "INTEGER"
    if t in ("real", "double precision"):
        return "REAL"
    return "TEXT"


def _select_expr(column: str, pg_type: str, typtype: str) -> sql.Composable:
    ident = sql.Identifier(column)
    t = pg_type.lower()
    if t.endswith("[]"):
        return sql.SQL("to_json({})::text").format(ident)
    if t.startswith(("numeric", "uuid", "json")) or typtype == "e":
        return sql.SQL("{}::text").format(ident)
    return ident


def _encode(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f" if value.microsecond else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)  # inet output form: no /32 on a host address
    return value


def copy_shop(dsn: str, path: Path) -> dict[str, dict[str, str]]:
    """Create every public table of ``dsn`` in SQLite at ``path`` and copy the rows; returns column types."""
    db = apsw.Connection(str(path))
    with psycopg.connect(dsn) as conn:
        layout: dict[str, list[tuple[str, str, str]]] = {}
        for table, column, pg_type, typtype in conn.execute(COLUMNS_SQL):
            layout.setdefault(table, []).append((column, pg_type, typtype))
        for table, cols in layout.items():
            ddl = ", ".join(f"{quote_ident(c)} {_affinity(t)}" for c, t, _ in cols)
            db.execute(f"CREATE TABLE {quote_ident(table)} ({ddl})")
            select = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(_select_expr(c, t, k) for c, t, k in cols), sql.Identifier(table))
            rows = [tuple(_encode(v) for v in row) for row in conn.execute(select)]
            marks = ", ".join("?" for _ in cols)
            with db:
                db.executemany(f"INSERT INTO {quote_ident(table)} VALUES ({marks})", rows)
        types = {t: {c: ty for c, ty, _ in cols} for t, cols in layout.items()}
    db.close()
    return types
