"""TEST HELPER: the simplest snapshot: COPY text -> codec -> apsw executemany, in FK order."""

from __future__ import annotations

from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge.config import TranslateConfig
from pg2edge.translators.codec import RowCodec, row_codec
from pg2edge.translators.ddl import apply_ddl, plan_ddl, table_order
from pg2edge.translators.introspect import introspect
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Schema, Table


def copy_rows(conn: psycopg.Connection[Any], table: Table, codec: RowCodec) -> list[tuple[Any, ...]]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in codec.columns)
    query = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
        cols, sql.Identifier(table.schema), sql.Identifier(table.name))
    out = []
    with conn.cursor() as cur, cur.copy(query) as copy:
        for row in copy.rows():
            out.append(codec.encode_row_text(row))
    return out


def insert_rows(db: apsw.Connection, table: Table, codec: RowCodec, rows: list[tuple[Any, ...]]) -> None:
    cols = ", ".join(quote_ident(c) for c in codec.columns)
    marks = ", ".join("?" for _ in codec.columns)
    with db:
        db.executemany(f"INSERT INTO {quote_ident(sqlite_table_name(table.schema, table.name))} ({cols}) "
                       f"VALUES ({marks})", rows)


def migrate(dsn: str, path: str, *, options: TranslateConfig | None = None,
            schemas: tuple[str, ...] = ("public",)) -> tuple[Schema, apsw.Connection, dict[str, RowCodec]]:
    """Introspect, plan, apply, copy every table; returns the model, the open SQLite file and the codecs."""
    options = options or TranslateConfig()
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = introspect(conn, schemas=schemas)
        db = apsw.Connection(str(path))
        apply_ddl(db, plan_ddl(schema, options=options))
        codecs = {}
        for table in table_order(schema.tables):
            codec = row_codec(table, options=options)
            insert_rows(db, table, codec, copy_rows(conn, table, codec))
            codecs[table.qualified] = codec
    return schema, db, codecs
