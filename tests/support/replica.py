"""Compare a SQLite replica with its PostgreSQL source through the one value codec."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge.config import TranslateConfig
from pg2edge.dsn import codec_dsn
from pg2edge.translators.quoting import quote_ident


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, type(v).__name__, v) for v in row)


def source_rows(dsn: str, table: Any, options: TranslateConfig) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Rows of the source table as the codec would store them (COPY text -> codec)."""
    from pg2edge.translators.codec import row_codec

    codec = row_codec(table, options=options)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in codec.columns)
    stmt = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
        cols, sql.Identifier(table.schema), sql.Identifier(table.name))
    out = []
    with psycopg.connect(codec_dsn(dsn)) as conn, conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in copy.rows():
            out.append(codec.encode_row_text(row))
    return list(codec.columns), sorted(out, key=_key)


def replica_rows(path: str | Path, target: str, columns: list[str]) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cols = ", ".join(quote_ident(c) for c in columns)
        rows = conn.execute(f"SELECT {cols} FROM {quote_ident(target)}").fetchall()
    finally:
        conn.close()
    return sorted((tuple(r) for r in rows), key=_key)


def diff_replica(dsn: str, path: str | Path, *, options: TranslateConfig | None = None,
                 tables: list[str] | None = None) -> dict[str, str]:
    """{table: description} of every table whose replica rows differ from the source; {} when equal."""
    from pg2edge.translators.introspect import introspect
    from pg2edge.translators.naming import sqlite_table_name

    options = options or TranslateConfig()
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = tables or [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_publication_tables ORDER BY 1").fetchall()]
        schema = introspect(conn, schemas=["public"], tables=names)
    problems = {}
    for table in schema.tables:
        columns, want = source_rows(dsn, table, options)
        got = replica_rows(path, sqlite_table_name(table.schema, table.name), columns)
        if want != got:
            missing = [r for r in want if r not in set(got)][:3]
            extra = [r for r in got if r not in set(want)][:3]
            problems[table.qualified] = (f"source {len(want)} rows, replica {len(got)}; "
                                         f"missing e.g. {missing}; extra e.g. {extra}")
    return problems


def assert_replica_equals(dsn: str, path: str | Path, **kwargs: Any) -> None:
    problems = diff_replica(dsn, path, **kwargs)
    assert not problems, problems


def current_lsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wait_until(predicate: Any, *, timeout: float = 30.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(every)
