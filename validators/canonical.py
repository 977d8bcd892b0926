"""Canonical text of a stored value and the row digest both sides agree on.

A replica value (what the codec stored: int, float, str, bytes or NULL) has one
canonical text: integers in decimal, REALs as the hex of their IEEE-754 bits
(``float8send`` on PostgreSQL), text as itself, BLOBs as lower-case hex. A row
is the concatenation of one piece per column: ``N`` for NULL, else ``v`` +
character length + ``:`` + text (length-prefixed, so no separator or NULL can
be confused with data). Its digest is the first 15 hex digits of its md5 as an
integer; a chunk checksum is (row count, sum of digests mod 2^63), which does
not depend on row order.

PostgreSQL computes the same digest in SQL from each type rule's
``pg_normalized_sql`` (translators/typemap.py). A table with a column that has
no such expression (arrays, numeric stored as REAL or INTEGER without a scale-0
typmod, timestamps stored as unix seconds/ms) is hashed in Python from COPY
text through the codec instead (:func:`python_fallback_columns` names them).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from pg2edge.translators.codec import RowCodec

MOD = 2**63
_md5 = hashlib.md5


def canonical(value: Any) -> str | None:
    """The canonical text of one replica value (None for NULL)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return struct.pack(">d", value).hex()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"no canonical text for a {type(value).__name__} value")


def row_text(values: Sequence[Any]) -> str:
    parts = []
    for value in values:
        kind = type(value)
        if kind is str:
            parts.append(f"v{len(value)}:{value}")
        elif value is None:
            parts.append("N")
        elif kind is int:
            text = str(value)
            parts.append(f"v{len(text)}:{text}")
        elif kind is bytes:
            parts.append(f"v{len(value) * 2}:{value.hex()}")
        else:
            text = canonical(value)  # type: ignore[assignment]
            parts.append("N" if text is None else f"v{len(text)}:{text}")
    return "".join(parts)


def row_digest(values: Sequence[Any]) -> int:
    """First 15 hex digits of md5(row_text) as an integer (what PostgreSQL's SQL computes)."""
    return int.from_bytes(_md5(row_text(values).encode("utf-8")).digest()[:8], "big") >> 4


def python_fallback_columns(codec: RowCodec) -> list[str]:
    """Columns with no exact PostgreSQL expression: their table is hashed in Python."""
    return [c for c in codec.columns if codec.rules[c].pg_sql is None]


def pg_canonical_sql(codec: RowCodec, column: str) -> sql.Composable:
    """The canonical text of ``column`` as a PostgreSQL expression (NULL for NULL)."""
    expr = codec.rules[column].pg_normalized_sql(sql.Identifier(column).as_string(None))
    if expr is None:
        raise ValueError(f"{codec.table.qualified}.{column} has no PostgreSQL canonical expression")
    return sql.SQL(expr)  # built from a quoted identifier and fixed SQL only


def pg_canonical_columns(codec: RowCodec) -> sql.Composable:
    """Select list ``c0, c1, ...``: each column's canonical text (NULL for NULL), computed once per row."""
    items = [sql.SQL("CASE WHEN {c} IS NULL THEN NULL ELSE {e} END AS {a}").format(
        c=sql.Identifier(column), e=pg_canonical_sql(codec, column), a=sql.Identifier(f"c{i}"))
        for i, column in enumerate(codec.columns)]
    return sql.SQL(", ").join(items) if items else sql.SQL("NULL AS c")


def pg_digest_of_columns(codec: RowCodec) -> sql.Composable:
    """The row digest over the ``c0, c1, ...`` columns of :func:`pg_canonical_columns`, as bigint."""
    pieces = [sql.SQL("coalesce('v' || length({a})::text || ':' || {a}, 'N')").format(a=sql.Identifier(f"c{i}"))
              for i in range(len(codec.columns))]
    text = sql.SQL(" || ").join(pieces) if pieces else sql.SQL("''")
    return sql.SQL("('x' || substr(md5({}), 1, 15))::bit(60)::bigint").format(text)


def pg_digest_sql(codec: RowCodec) -> sql.Composable:
    """PostgreSQL expression: :func:`row_digest` of the current row (simple form, evaluates texts twice)."""
    pieces = [sql.SQL("coalesce('v' || length({e})::text || ':' || {e}, 'N')").format(
        e=sql.SQL("(CASE WHEN {c} IS NULL THEN NULL ELSE {x} END)").format(
            c=sql.Identifier(c), x=pg_canonical_sql(codec, c))) for c in codec.columns]
    text = sql.SQL(" || ").join(pieces) if pieces else sql.SQL("''")
    return sql.SQL("('x' || substr(md5({}), 1, 15))::bit(60)::bigint").format(text)


class _ChunkSum:
    """apsw aggregate: sum of row digests mod 2^63 (count is taken with count(*))."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, *values: Any) -> None:
        self.total += row_digest(values)

    def final(self) -> int:
        return self.total % MOD


def register_sqlite(conn: Any) -> None:
    """Register ``pg2edge_digest(cols...)`` and the aggregate ``pg2edge_chunksum(cols...)`` on an apsw connection."""
    conn.create_scalar_function("pg2edge_digest", lambda *values: row_digest(values), deterministic=True)

    def factory() -> tuple[_ChunkSum, Any, Any]:
        agg = _ChunkSum()
        return agg, lambda _ctx, *values: agg.step(*values), lambda _ctx: agg.final()

    conn.create_aggregate_function("pg2edge_chunksum", factory)
