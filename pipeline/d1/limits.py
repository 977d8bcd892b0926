"""Cloudflare D1's limits, and splitting a list of statements into batches that fit them.

Figures from D1's published limits (checked 2026-12): 100,000 bytes of SQL per
statement, 100 bound parameters per statement, 2,000,000 bytes per string,
BLOB or row, 100 columns per table, 10 GB per database (Workers Paid), and
1,000 queries per Worker invocation (50 on the Free plan). The local D1 of
``wrangler dev`` enforces few of them, so pg2edge checks them itself before
anything is sent: a production D1 would refuse what a local one accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pg2edge.pipeline.d1.errors import D1LimitError

Stmt = tuple[str, Sequence[Any]]


@dataclass(frozen=True, slots=True)
class D1Limits:
    statement_bytes: int = 100_000
    params: int = 100
    value_bytes: int = 2_000_000  # one string or BLOB; also one row
    row_bytes: int = 2_000_000
    columns: int = 100
    database_bytes: int = 10 * 1000**3
    batch_statements: int = 500  # per request; D1 allows 1,000 queries per invocation on Workers Paid
    request_bytes: int = 8 * 1024 * 1024  # per request to the Worker (Workers accept 100 MB)
    transaction_bytes: int = 32 * 1024 * 1024  # one source transaction, sent whole in one request


DEFAULT_LIMITS = D1Limits()


def value_size(value: Any) -> int:
    """Bytes D1 counts for one value (text as UTF-8, BLOB as is, numbers 8)."""
    if value is None:
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    return 8


def statement_size(sql: str, params: Sequence[Any]) -> int:
    """Bytes a statement takes in a request (SQL text plus values)."""
    return len(sql.encode("utf-8")) + sum(value_size(v) + 4 for v in params)


def check_statement(sql: str, params: Sequence[Any], *, what: str, limits: D1Limits = DEFAULT_LIMITS) -> None:
    """Raise D1LimitError naming ``what`` (table and key) when one statement cannot go to D1 as it is."""
    text = len(sql.encode("utf-8"))
    if text > limits.statement_bytes:
        raise D1LimitError(f"{what}: the statement is {text} bytes of SQL, over D1's "
                           f"{limits.statement_bytes}-byte statement limit")
    if len(params) > limits.params:
        raise D1LimitError(f"{what}: the statement binds {len(params)} parameters, over D1's limit of "
                           f"{limits.params}")
    big = max((value_size(v) for v in params), default=0)
    if big > limits.value_bytes:
        raise D1LimitError(f"{what}: one value is {big} bytes, over D1's {limits.value_bytes}-byte limit "
                           "for a string, BLOB or row")
    total = sum(value_size(v) for v in params)
    if total > limits.row_bytes:
        raise D1LimitError(f"{what}: the row is {total} bytes, over D1's {limits.row_bytes}-byte row limit")


def fits_cheaply(params: Sequence[Any], limits: D1Limits = DEFAULT_LIMITS) -> bool:
    """True when ``params`` surely fit (count, and 4 bytes per character at most): no encoding needed."""
    if len(params) > limits.params:
        return False
    total = 0
    for v in params:
        if isinstance(v, (str, bytes, bytearray, memoryview)):
            total += len(v)
    return total * 4 <= limits.value_bytes


def check_columns(table: str, columns: int, *, limits: D1Limits = DEFAULT_LIMITS) -> None:
    if columns > limits.columns:
        raise D1LimitError(f"table {table}: {columns} columns, over D1's limit of {limits.columns} per table")


def chunks(stmts: Sequence[Stmt], *, limits: D1Limits = DEFAULT_LIMITS,
           reserve: int = 0, reserve_bytes: int = 0) -> Iterator[list[Stmt]]:
    """Consecutive runs of ``stmts`` that each fit one request (``reserve`` statements/bytes left free)."""
    run: list[Stmt] = []
    size = 0
    max_n = limits.batch_statements - reserve
    max_bytes = limits.request_bytes - reserve_bytes
    for sql, params in stmts:
        n = statement_size(sql, params) * 2 + 32  # JSON escaping and base64 can double it
        if run and (len(run) >= max_n or size + n > max_bytes):
            yield run
            run, size = [], 0
        run.append((sql, params))
        size += n
    if run:
        yield run
