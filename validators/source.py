"""The PostgreSQL side of a validation: one REPEATABLE READ snapshot and the LSN it is known to cover.

Everything read through one :class:`SourceSnapshot` sees the same data. Its
``lsn`` is ``pg_current_wal_lsn()`` taken by the snapshot's first statement:
every commit visible in the snapshot has a commit record below it, so once the
replica has applied up to ``lsn`` it holds at least what the snapshot sees
(it may hold more: differing keys are re-checked, see validators/run.py).

Keys are tuples of codec-encoded values (what the replica stores), so both
sides compare them directly. Range predicates are used only for keys whose
order is the same in PostgreSQL and SQLite (integers, text under COLLATE "C",
uuid, date); other keys are matched through their canonical text.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pg2edge import dsn as dsnlib
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.translators.codec import RowCodec
from pg2edge.translators.schema import Table
from pg2edge.validators.canonical import (
    MOD,
    canonical,
    pg_canonical_columns,
    pg_canonical_sql,
    pg_digest_of_columns,
    pg_digest_sql,
    python_fallback_columns,
    row_digest,
)

log = logging.getLogger(__name__)

Key = tuple[Any, ...]
# Session settings the canonical expressions rely on (interval text is ISO-8601, as the codec stores it).
SESSION_SETTINGS = ("SET IntervalStyle = iso_8601", "SET DateStyle = 'ISO, MDY'")
_ORDERED = {"int2", "int4", "int8", "numeric", "text", "varchar", "uuid", "date"}
_COLLATED = {"text", "varchar"}


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Keys ``lo < key <= hi``; None means unbounded on that side."""

    lo: Key | None = None
    hi: Key | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    range: KeyRange
    count: int
    total: int  # sum of row digests mod 2^63


class TableSide:
    """How one table is read on PostgreSQL: key expressions, ordering, row digest."""

    def __init__(self, table: Table, codec: RowCodec) -> None:
        if not table.primary_key:
            raise ValueError(f"{table.qualified} has no primary key")
        self.table = table
        self.codec = codec
        self.key = table.primary_key
        self.name = sql.Identifier(table.schema, table.name)
        self.ordered = all(table.column(k).kind in _ORDERED and codec.rules[k].pg_sql is not None for k in self.key)
        self.sql_digest = not python_fallback_columns(codec)
        self.key_index = [codec.columns.index(k) for k in self.key]

    def _key_expr(self, column: str) -> sql.Composable:
        ident = sql.Identifier(column)
        if self.table.column(column).kind in _COLLATED:
            return sql.SQL('{} COLLATE "C"').format(ident)
        return ident

    def _param(self, column: str) -> sql.Composable:
        col = self.table.column(column)
        return sql.SQL("%s::{}").format(sql.SQL(col.base_type))

    @property
    def key_cols(self) -> sql.Composable:
        return sql.SQL(", ").join(self._key_expr(k) for k in self.key)

    def where(self, rng: KeyRange) -> tuple[sql.Composable, list[Any]]:
        """Row-value predicate for a key range (only for ordered keys)."""
        parts: list[sql.Composable] = []
        params: list[Any] = []
        row = sql.SQL("({})").format(self.key_cols)
        if rng.lo is not None:
            parts.append(sql.SQL("{} > ({})").format(row, sql.SQL(", ").join(self._param(k) for k in self.key)))
            params += list(rng.lo)
        if rng.hi is not None:
            parts.append(sql.SQL("{} <= ({})").format(row, sql.SQL(", ").join(self._param(k) for k in self.key)))
            params += list(rng.hi)
        return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params

    def key_match(self, keys: Sequence[Key]) -> tuple[sql.Composable, list[Any]]:
        """Predicate: the row's key is one of ``keys`` (codec-encoded values)."""
        if self.ordered:
            arrays = sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(self.table.column(k).base_type))
                                        for k in self.key)
            row = sql.SQL(", ").join(sql.Identifier(k) for k in self.key)
            return (sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(row, arrays),
                    [[k[i] for k in keys] for i in range(len(self.key))])
        canon = sql.SQL(", ").join(pg_canonical_sql(self.codec, k) for k in self.key)
        arrays = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in self.key)

        return (sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(canon, arrays),
                [[canonical(k[i]) for k in keys] for i in range(len(self.key))])

    def key_of(self, row: Sequence[Any]) -> Key:
        return tuple(row[i] for i in self.key_index)


class SourceSnapshot:
    """A read-only REPEATABLE READ transaction on the source; ``lsn`` is known to cover what it sees."""

    def __init__(self, dsn: str) -> None:
        self.conn = dsnlib.connect(dsn)
        for stmt in SESSION_SETTINGS:
            self.conn.execute(stmt)
        self.conn.commit()
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        self.lsn = parse_lsn(row[0])

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

    def __enter__(self) -> SourceSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- counts and samples -------------------------------------------------------------------
    def count(self, side: TableSide) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(side.name)).fetchone()
        return int(row[0]) if row else 0

    def estimated_rows(self, side: TableSide) -> int:
        row = self.conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                                (side.name.as_string(self.conn),)).fetchone()
        return max(0, int(row[0])) if row else 0

    def sample_keys(self, side: TableSide, n: int) -> list[Key]:
        """About ``n`` random keys: TABLESAMPLE BERNOULLI at a rate from reltuples (never ORDER BY random())."""
        estimate = self.estimated_rows(side)
        cols = sql.SQL(", ").join(sql.Identifier(k) for k in side.key)
        if estimate <= 0 or estimate <= n * 2:
            query = sql.SQL("SELECT {} FROM {}").format(cols, side.name)
            params: list[Any] = []
        else:
            pct = min(100.0, 100.0 * n * 1.3 / estimate)
            query = sql.SQL("SELECT {} FROM {} TABLESAMPLE BERNOULLI (%s)").format(cols, side.name)
            params = [pct]
        keys = self._encoded_keys(side, query, params)
        if len(keys) > n:

            keys = random.sample(keys, n)
        return keys

    def _encoded_keys(self, side: TableSide, query: sql.Composable, params: Sequence[Any]) -> list[Key]:
        copy_query = sql.SQL("COPY ({}) TO STDOUT").format(query)
        out = []
        with self.conn.cursor() as cur, cur.copy(copy_query, params or None) as copy:
            for row in copy.rows():
                out.append(tuple(side.codec.encode_text(k, v) for k, v in zip(side.key, row)))
        return out

    # -- rows ---------------------------------------------------------------------------------
    def rows(self, side: TableSide, query_where: sql.Composable, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Codec-encoded rows (``codec.columns`` order) matching a predicate, read as COPY text."""
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in side.codec.columns)
        query = sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(cols, side.name, query_where)
        with self.conn.cursor() as cur, cur.copy(query, list(params) or None) as copy:
            for row in copy.rows():
                yield side.codec.encode_row_text(row)

    def text_rows_by_keys(self, side: TableSide, keys: Sequence[Key]) -> dict[Key, tuple[str | None, ...]]:
        """PostgreSQL text of the rows for ``keys`` (what the applier takes), keyed by encoded key."""
        if not keys:
            return {}
        where, params = side.key_match(keys)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in side.codec.columns)
        query = sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(cols, side.name, where)
        out = {}
        with self.conn.cursor() as cur, cur.copy(query, params) as copy:
            for row in copy.rows():
                out[side.key_of(side.codec.encode_row_text(row))] = tuple(row)
        return out

    def rows_by_keys(self, side: TableSide, keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        if not keys:
            return {}
        where, params = side.key_match(keys)
        return {side.key_of(r): r for r in self.rows(side, where, params)}

    # -- checksums ----------------------------------------------------------------------------
    def chunks(self, side: TableSide, *, chunk_rows: int) -> list[Chunk]:
        """The table split into key ranges of about ``chunk_rows`` rows, each with its checksum."""
        if not side.ordered:
            count, total = self.range_checksum(side, KeyRange())
            return [Chunk(KeyRange(), count, total)]
        if not side.sql_digest:
            return self._chunks_python(side, chunk_rows=chunk_rows)
        bounds = self.boundaries(side, chunk_rows=chunk_rows)
        sums = self.bucket_sums(side, chunk_rows=chunk_rows)
        return [Chunk(rng, *sums.get(i, (0, 0))) for i, rng in enumerate(ranges_from(bounds))]

    def boundaries(self, side: TableSide, *, chunk_rows: int) -> list[Key]:
        """Every ``chunk_rows``-th key in key order (an index-only scan): the upper bounds of the chunks."""
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in side.key)
        query = sql.SQL("SELECT {k} FROM (SELECT {k}, row_number() OVER (ORDER BY {o}) AS rn FROM {t}) s "
                        "WHERE rn %% %s = 0 ORDER BY rn").format(k=keys, o=side.key_cols, t=side.name)
        encode = side.codec.encode_python
        return [tuple(encode(k, v) for k, v in zip(side.key, row))
                for row in self.conn.execute(query, (max(1, chunk_rows),))]

    def bucket_sums(self, side: TableSide, *, chunk_rows: int) -> dict[int, tuple[int, int]]:
        """Chunk number -> (rows, digest sum mod 2^63), chunks as cut by :meth:`boundaries`, in one scan."""
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in side.key)
        query = sql.SQL(
            "SELECT (rn - 1) / %s AS b, count(*), sum({h}) FROM (SELECT {keys}, "
            "row_number() OVER (ORDER BY {o}) AS rn, {canon} FROM {t}) s GROUP BY b").format(
                h=pg_digest_of_columns(side.codec), keys=keys, o=side.key_cols,
                canon=pg_canonical_columns(side.codec), t=side.name)
        return {int(b): (int(n), int(total) % MOD) for b, n, total in
                self.conn.execute(query, (max(1, chunk_rows),))}

    def _chunks_python(self, side: TableSide, *, chunk_rows: int) -> list[Chunk]:
        """Python digests from COPY text, in key order, cut every ``chunk_rows`` rows."""
        order = side.key_cols
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in side.codec.columns)
        query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(cols, side.name, order)
        out: list[Chunk] = []
        lo: Key | None = None
        count = total = 0
        key: Key | None = None
        with self.conn.cursor() as cur, cur.copy(query) as copy:
            for raw in copy.rows():
                row = side.codec.encode_row_text(raw)
                key = side.key_of(row)
                count += 1
                total += row_digest(row)
                if count >= chunk_rows:
                    out.append(Chunk(KeyRange(lo, key), count, total % MOD))
                    lo, count, total = key, 0, 0
        out.append(Chunk(KeyRange(lo, None), count, total % MOD))
        return out

    def range_checksum(self, side: TableSide, rng: KeyRange) -> tuple[int, int]:
        digests = None
        if side.sql_digest:
            where, params = side.where(rng) if side.ordered else (sql.SQL("true"), [])
            row = self.conn.execute(sql.SQL(
                "SELECT count(*), coalesce(sum({}), 0) FROM (SELECT {} FROM {} WHERE {} OFFSET 0) s").format(
                pg_digest_of_columns(side.codec), pg_canonical_columns(side.codec), side.name, where),
                params).fetchone()
            assert row is not None
            return int(row[0]), int(row[1]) % MOD
        digests = self.range_digests(side, rng)
        return len(digests), sum(digests.values()) % MOD

    def range_digests(self, side: TableSide, rng: KeyRange) -> dict[Key, int]:
        """Key -> row digest for every row in the range."""
        where, params = side.where(rng) if side.ordered else (sql.SQL("true"), [])
        if not (side.sql_digest and side.ordered):
            return {side.key_of(r): row_digest(r) for r in self.rows(side, where, params)}
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in side.key)
        query = sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(pg_digest_sql(side.codec), keys, side.name, where)
        encode = side.codec.encode_python
        return {tuple(encode(k, v) for k, v in zip(side.key, row[1:])): int(row[0])
                for row in self.conn.execute(query, params)}

    def split_key(self, side: TableSide, rng: KeyRange, offset: int) -> Key | None:
        """The key at ``offset`` (0-based) in key order inside the range."""
        where, params = side.where(rng)
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in side.key)
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET %s LIMIT 1").format(
            keys, side.name, where, side.key_cols)
        row = self.conn.execute(query, [*params, offset]).fetchone()
        return None if row is None else tuple(side.codec.encode_python(k, v) for k, v in zip(side.key, row))


def ranges_from(bounds: Sequence[Key]) -> list[KeyRange]:
    """Upper bounds b0 < b1 < ... -> ranges (-inf, b0], (b0, b1], ..., (b_last, +inf)."""
    out = []
    lo: Key | None = None
    for hi in bounds:
        out.append(KeyRange(lo, hi))
        lo = hi
    out.append(KeyRange(lo, None))
    return out


def lsn_now(dsn: str) -> int:
    with dsnlib.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(row[0])




