"""Small SQL helpers for tests: run statements on PostgreSQL, read rows from PostgreSQL or a SQLite file."""

from __future__ import annotations

from pathlib import Path

import apsw
import psycopg


def run_sql(dsn: str, *statements: str, params: tuple | None = None) -> None:
    """Run each statement in autocommit (``params`` bound to every one of them)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt, params)


def pg_rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(query, params or None).fetchall()]


def file_rows(path: str | Path, query: str) -> list[tuple]:
    db = apsw.Connection(str(path))
    try:
        return [tuple(r) for r in db.execute(query).fetchall()]
    finally:
        db.close()
