"""Cloudflare D1 export: an SQL script that ``wrangler d1 execute --file`` accepts.

D1 rejects ``BEGIN``/``COMMIT`` and ``PRAGMA foreign_keys`` in a script and
caps each statement at 100 KB, so the script is: CREATE TABLE statements,
multi-row INSERTs split by size with tables parents-first, then indexes,
views and triggers (created after the data so triggers do not fire during the
load). pg2edge's internal ``_pg2edge_*`` tables are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import apsw

from pg2edge.pipeline.exports.errors import ExportError, RowTooLargeError
from pg2edge.pipeline.exports.literals import sql_literal
from pg2edge.pipeline.exports.result import ExportResult
from pg2edge.pipeline.exports.schema import Schema, Table, check_output, open_readonly, read_schema
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

D1_STATEMENT_LIMIT = 100_000  # bytes per SQL statement D1 accepts


def export_d1(target: str | Path, output: str | Path, *, overwrite: bool = False,
              max_statement_bytes: int = D1_STATEMENT_LIMIT) -> ExportResult:
    """Write ``output``, a D1 SQL script with the replica's user tables, rows, indexes, views and triggers.

    Raises :class:`RowTooLargeError` naming table and key when one row alone
    exceeds ``max_statement_bytes`` (D1 cannot load it through a script).
    """
    target, output = Path(target), Path(output)
    check_output(target, output, overwrite)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    db = open_readonly(target)
    stats = _Stats(limit=max_statement_bytes)
    try:
        with db, tmp.open("w", encoding="utf-8", newline="\n") as out:  # one read transaction: a consistent view
            schema = read_schema(db)
            _write_script(db, schema, out, stats)
        os.replace(tmp, output)
    except apsw.Error as exc:
        raise ExportError(f"cannot read {target}: {exc}") from exc
    finally:
        db.close()
        tmp.unlink(missing_ok=True)
    log.info("d1 export of %s written to %s", target, output)
    return ExportResult(output=output, format="d1", tables=[t.name for t in schema.tables], rows=stats.rows,
                        statements=stats.statements, largest_statement=stats.largest, excluded=schema.excluded)


class _Stats:
    def __init__(self, *, limit: int) -> None:
        self.limit, self.rows, self.statements, self.largest = limit, 0, 0, 0

    def emit(self, out: TextIO, statement: str, *, what: str) -> None:
        size = len(statement.encode("utf-8")) + 1  # with the terminating ';'
        if size >= self.limit:
            raise ExportError(f"{what} is {size} bytes, over the {self.limit}-byte statement limit of D1")
        out.write(statement)
        out.write(";\n")
        self.statements += 1
        self.largest = max(self.largest, size)


def _write_script(db: apsw.Connection, schema: Schema, out: TextIO, stats: _Stats) -> None:
    reserved = [t.name for t in schema.tables if t.name.lower().startswith("_cf_")]
    if reserved:
        raise ExportError(f"D1 reserves names starting with _cf_; rename table(s) {', '.join(reserved)} first")
    out.write("-- pg2edge export for Cloudflare D1: wrangler d1 execute DB --file THIS_FILE\n")
    if schema.cyclic:  # rows of tables that reference each other (or themselves) may precede their parents
        stats.emit(out, "PRAGMA defer_foreign_keys = on", what="the deferred foreign-key pragma")
    for table in schema.tables:
        stats.emit(out, table.sql, what=f"CREATE TABLE of {table.name}")
    for table in schema.tables:
        _write_rows(db, table, out, stats)
    for kind, name, sql in schema.others:
        stats.emit(out, sql, what=f"CREATE {kind.upper()} {name}")


def _write_rows(db: apsw.Connection, table: Table, out: TextIO, stats: _Stats) -> None:
    if not table.columns:
        return
    cols = ", ".join(quote_ident(c) for c in table.columns)
    head = f"INSERT INTO {quote_ident(table.name)} ({cols}) VALUES\n"
    head_size = len(head.encode("utf-8"))
    batch: list[str] = []
    size = head_size
    for rowid, values in _rows(db, table):
        row = "(" + ", ".join(sql_literal(v) for v in values) + ")"
        row_size = len(row.encode("utf-8")) + 2  # ",\n"
        if head_size + row_size + 1 >= stats.limit:
            raise RowTooLargeError(
                f"table {table.name}: the row with {_key_text(table, rowid, values)} needs a "
                f"{head_size + row_size} byte INSERT, over D1's {stats.limit}-byte statement limit; "
                "load this table another way (for example the Turso export, or split the value)")
        if batch and size + row_size + 1 >= stats.limit:
            stats.emit(out, head + ",\n".join(batch), what=f"INSERT into {table.name}")
            batch, size = [], head_size
        batch.append(row)
        size += row_size
        stats.rows += 1
    if batch:
        stats.emit(out, head + ",\n".join(batch), what=f"INSERT into {table.name}")


def _rows(db: apsw.Connection, table: Table) -> Iterator[tuple[Any, Sequence[Any]]]:
    """(rowid or None, column values) in key order."""
    cols = ", ".join(quote_ident(c) for c in table.columns)
    name = quote_ident(table.name)
    if table.virtual or table.without_rowid:
        order = "" if table.virtual else " ORDER BY " + ", ".join(quote_ident(c) for c in table.key)
        for values in db.execute(f"SELECT {cols} FROM {name}{order}"):
            yield None, values
        return
    for rowid, *values in db.execute(f"SELECT _rowid_, {cols} FROM {name} ORDER BY _rowid_"):
        yield rowid, values


def _key_text(table: Table, rowid: Any, values: Sequence[Any]) -> str:
    by_name = dict(zip(table.columns, values))
    if table.key and all(k in by_name for k in table.key):
        return ", ".join(f"{k}={by_name[k]!r}" for k in table.key)
    return f"rowid={rowid!r}" if rowid is not None else "no key"
