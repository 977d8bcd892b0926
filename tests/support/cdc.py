"""Helpers for the replication tests: pump a real stream into a real SQLite replica."""

from __future__ import annotations

import time
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge.pipeline.sinks.sqlite import Applier, ApplyResult
from pg2edge.pipeline.sources.cdc import CdcSource
from pg2edge.translators.quoting import quote_ident


def emit_marker(dsn: str) -> int:
    """A non-transactional logical message; everything committed before it is decoded before it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_logical_emit_message(false, 'pg2edge-test', 'sync')::text").fetchone()
    assert row is not None
    from pg2edge.pipeline.lsn import parse_lsn

    return parse_lsn(row[0])


def sync(source: CdcSource, applier: Applier, dsn: str, *, timeout: float = 60.0, ack: bool = True,
         max_transactions: int = 1000) -> list[ApplyResult]:
    """Apply (and ack) batches until the stream passes a marker emitted now."""
    marker = emit_marker(dsn)
    results = []
    deadline = time.monotonic() + timeout
    while source.last_heartbeat is None or source.last_heartbeat.lsn < marker:
        assert time.monotonic() < deadline, "stream did not reach the sync marker"
        batch = source.batch(max_wait=0.5, max_transactions=max_transactions)
        if batch:
            res = applier.apply(batch)
            results.append(res)
            if ack and res.position is not None:
                source.ack(res.position.end_lsn)
    return results


def pg_rows(dsn: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows as PostgreSQL text, ordered by all columns."""
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns)
    with psycopg.connect(dsn) as conn:
        return pg_sorted([tuple(r) for r in conn.execute(
            sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(table))).fetchall()])


def sqlite_rows(conn: apsw.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    cols = ", ".join(quote_ident(c) for c in columns)
    rows = conn.execute(f"SELECT {cols} FROM {quote_ident(table)}").fetchall()
    return sorted((tuple(r) for r in rows), key=lambda r: tuple((v is not None, v) for v in r))


def pg_sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda r: tuple((v is not None, v) for v in r))
