"""The PostgreSQL-side canonical text of every supported type equals the SQLite side, value by value."""

from __future__ import annotations

from typing import Any

import apsw
import psycopg
import pytest
from psycopg import sql

from pg2edge.config import TranslateConfig
from pg2edge.translators.codec import row_codec
from pg2edge.translators.ddl import apply_ddl, plan_ddl
from pg2edge.translators.introspect import introspect
from pg2edge.translators.quoting import quote_ident
from pg2edge.validators.canonical import (
    canonical,
    pg_canonical_sql,
    pg_digest_sql,
    python_fallback_columns,
    register_sqlite,
    row_digest,
)
from pg2edge.validators.source import SESSION_SETTINGS
from tests.support.copyloop import copy_rows, insert_rows
from tests.test_codec_every_type import every_dsn  # noqa: F401  (fixture)


@pytest.mark.parametrize("timezone", ["UTC", "America/St_Johns"])
def test_pg_canonical_text_equals_sqlite_canonical_text(every_dsn: str, sqlite_path: Any,  # noqa: F811
                                                        timezone: str) -> None:
    options = TranslateConfig()
    with psycopg.connect(every_dsn, autocommit=True) as conn:
        schema = introspect(conn)
        table = schema.table("every")
        db = apsw.Connection(str(sqlite_path))
        apply_ddl(db, plan_ddl(schema, options=options))
        codec = row_codec(table, options=options)
        conn.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(timezone)))
        insert_rows(db, table, codec, copy_rows(conn, table, codec))
        for stmt in SESSION_SETTINGS:
            conn.execute(stmt)
        exact = [c for c in codec.columns if c not in python_fallback_columns(codec)]
        assert {"b", "f4", "f8", "n", "n10", "by", "u", "tmz", "ts", "tstz", "iv", "j", "jb", "ch", "m", "mo",
                "r", "p", "ip", "bt", "x"} <= set(exact)
        assert {"ia", "ta", "na", "ma"} <= set(python_fallback_columns(codec))
        exprs = sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE {} END").format(sql.Identifier(c), pg_canonical_sql(codec, c))
            for c in exact)
        pg_rows = {r[0]: r[1:] for r in conn.execute(
            sql.SQL("SELECT id, {} FROM every").format(exprs)).fetchall()}
        pg_digests = dict(conn.execute(sql.SQL("SELECT id, {} FROM every").format(
            pg_digest_sql(row_codec(table.__class__(schema=table.schema, name=table.name,
                                                    columns=tuple(table.column(c) for c in exact)),
                                    options=options)))).fetchall())
    stored = {r[0]: r[1:] for r in db.execute(
        f"SELECT id, {', '.join(quote_ident(c) for c in exact)} FROM every")}
    assert len(stored) == len(pg_rows) >= 8
    for rid, values in stored.items():
        for column, got, want in zip(exact, values, pg_rows[rid], strict=True):
            assert canonical(got) == want, (column, rid, got, want)
        assert row_digest(values) == pg_digests[rid], rid
    register_sqlite(db)
    cols = ", ".join(quote_ident(c) for c in exact)
    in_sqlite = dict(db.execute(f"SELECT id, pg2edge_digest({cols}) FROM every"))
    assert in_sqlite == pg_digests


def test_row_digest_separates_null_empty_and_shifted_values() -> None:
    assert row_digest([None]) != row_digest([""])
    assert row_digest(["ab", "c"]) != row_digest(["a", "bc"])
    assert row_digest([1]) == row_digest(["1"])  # documented: types are not part of the digest
    assert row_digest([1.0]) != row_digest([1])
    assert canonical(b"\x00\xff") == "00ff"
