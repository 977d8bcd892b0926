"""Snapshot into D1: copy a finished local snapshot file (the staging replica) into D1 through the Worker.

The snapshot itself is pg2edge's normal one (slot with an exported snapshot,
parallel copy, resumable) into a local SQLite file; this module then loads that
file into D1, checked first and batched:

1. **Checks before anything is sent.** Every table has at most 100 columns;
   no row is over D1's 2 MB; no name starts with ``_cf_``. Each failure is a
   :class:`D1LimitError` naming the table (and key, and size).
2. **Tables**, parents before children (``CREATE TABLE IF NOT EXISTS``).
3. **Rows** in multi-row INSERTs of at most 100 bound values each, many
   statements per request (the loop every remote upload shares:
   :func:`pipeline.remote.upload.send_rows`). Each request also records the table's progress in
   D1 (``d1_upload/<table>``), in the same batch, so an interrupted load
   resumes after the last batch D1 holds and never loads a row twice.
4. **Indexes, views, triggers**, then the staging file's state records
   (source, stream, tables, snapshot run, position) in ONE final batch,
   guarded so a second upload never overwrites a D1 replica that streams.

Until that final batch D1 has no position, so ``status`` shows the snapshot
as not done and ``sync`` never streams into a half-loaded D1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import D1Client, D1Connection, Recorder, for_state
from pg2edge.pipeline.d1.errors import D1Error, D1LimitError
from pg2edge.pipeline.d1.guards import position_guard, schema_statements
from pg2edge.pipeline.d1.limits import DEFAULT_LIMITS, D1Limits, Stmt, check_columns
from pg2edge.pipeline.exports.schema import Schema, Table, read_schema
from pg2edge.pipeline.remote.upload import Packing, check_target, send_rows
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

PROGRESS_SCOPE = "d1_upload"


@dataclass
class UploadReport:
    tables: int = 0
    rows: int = 0
    requests: int = 0
    skipped: bool = False  # D1 already held a complete snapshot


def upload_snapshot(staging: str | Path, client: D1Client, *, limits: D1Limits = DEFAULT_LIMITS,
                    say: Callable[[str], None] = log.info) -> UploadReport:
    """Load the finished snapshot in ``staging`` into D1 (resumable); see the module docstring."""
    report = UploadReport()
    conn = D1Connection(client)
    client.batch(schema_statements())
    if state.read_position(for_state(conn)) is not None:
        report.skipped = True
        return report
    db = apsw.Connection(str(staging), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        schema = read_schema(db)
        check_schema(db, schema, limits=limits)
        _check_target(conn, db)
        pos = state.read_position(db)
        if pos is None:
            raise D1LimitError(f"staging replica {staging} holds no finished snapshot (no position)")
        started = Recorder()  # marks D1 as a pg2edge replica being loaded (a rerun resumes, never refuses)
        state.write_record(for_state(started), PROGRESS_SCOPE, "", {"started": True})
        client.batch([*started.stmts,
                      *[(t.sql.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1), []) for t in schema.tables]])
        done = state.read_scope(for_state(conn), PROGRESS_SCOPE)
        for table in schema.tables:
            sent = int((done.get(table.name) or {}).get("rows", 0))
            report.rows += _upload_table(db, client, schema, table, sent, limits=limits, report=report)
            report.tables += 1
            say(f"d1 snapshot: {table.name} loaded")
        final: list[Stmt] = [position_guard(None)]
        final += [(sql.replace(f"CREATE {kind.upper()} ", f"CREATE {kind.upper()} IF NOT EXISTS ", 1), [])
                  for kind, _name, sql in schema.others]
        for scope, name, value, updated_at in db.execute(
                f"SELECT scope, name, value, updated_at FROM {quote_ident(state.STATE_TABLE)} ORDER BY scope, name"):
            final.append((f"INSERT OR REPLACE INTO {quote_ident(state.STATE_TABLE)} (scope, name, value, updated_at) "
                          "VALUES (?, ?, ?, ?)", [scope, name, value, updated_at]))
        client.batch(final)
        report.requests += 2
    finally:
        db.close()
    return report


def check_schema(db: apsw.Connection, schema: Schema, *, limits: D1Limits = DEFAULT_LIMITS) -> None:
    """Refuse, by name, what D1 cannot hold: over 100 columns, a row over 2 MB, a reserved _cf_ name."""
    reserved = [t.name for t in schema.tables if t.name.lower().startswith("_cf_")]
    if reserved:
        raise D1LimitError(f"D1 reserves names starting with _cf_: rename table(s) {', '.join(reserved)} first")
    for table in schema.tables:
        check_columns(table.name, len(table.columns), limits=limits)
    for table in schema.tables:
        if not table.columns or table.virtual:
            continue
        size = " + ".join(f"coalesce(length(CAST({quote_ident(c)} AS BLOB)), 0)" for c in table.columns)
        key = [quote_ident(k) for k in table.key] if table.key else ["rowid"]
        row = db.execute(f"SELECT {', '.join(key)}, {size} AS n FROM {quote_ident(table.name)} "
                         f"WHERE {size} > ? ORDER BY n DESC LIMIT 1", (limits.row_bytes,)).fetchone()
        if row is not None:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(table.key or ["rowid"], row[:-1]))
            raise D1LimitError(f"table {table.name}: the row with {shown} is {row[-1]} bytes, over D1's "
                               f"{limits.row_bytes}-byte row limit; exclude the table (--tables) or shorten the "
                               "value on the source")


def _check_target(conn: D1Connection, db: apsw.Connection) -> None:
    """Refuse a D1 database that holds another source's replica, or tables pg2edge did not write."""
    known = state.read_source(for_state(conn))
    check_target(conn.label, state.read_source(db), known, error=D1Error, empty="an empty D1 database",
                 ours=known is not None or bool(state.read_scope(for_state(conn), PROGRESS_SCOPE)),
                 user_tables=lambda: [str(r[0]) for r in conn.execute(
                     "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                     "AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE '\\_pg2edge\\_%' ESCAPE '\\'")])


def _rows(db: apsw.Connection, table: Table, offset: int) -> Iterator[Sequence[Any]]:
    cols = ", ".join(quote_ident(c) for c in table.columns)
    order = ", ".join(quote_ident(k) for k in table.key) if table.without_rowid else "_rowid_"
    yield from db.execute(f"SELECT {cols} FROM {quote_ident(table.name)} ORDER BY {order} LIMIT -1 OFFSET ?",
                          (offset,))


def _upload_table(db: apsw.Connection, client: D1Client, schema: Schema, table: Table, sent: int, *,
                  limits: D1Limits, report: UploadReport) -> int:
    """Send the table's rows after the first ``sent``; each request records the new count with its rows
    (the loop: ``remote.upload.send_rows``; D1's limits: 100 bound values a statement, statements and bytes
    a request)."""
    if not table.columns or table.virtual:
        return 0
    loaded = 0
    prefix: list[Stmt] = [("PRAGMA defer_foreign_keys = on", [])] if schema.cyclic else []
    budget = limits.batch_statements - 2 - len(prefix)

    def send(stmts: list[Stmt], rows: int, _key: Any, _final: bool) -> None:
        nonlocal loaded
        if not stmts:
            return
        progress = Recorder()
        state.write_record(for_state(progress), PROGRESS_SCOPE, table.name, {"rows": sent + loaded + rows})
        client.batch([*prefix, *stmts, *progress.stmts])
        report.requests += 1
        loaded += rows

    def encode(values: Sequence[Any]) -> tuple[Sequence[Any], int]:  # D1's values go as they are
        size = 0
        for v in values:
            size += len(v) if isinstance(v, (str, bytes)) else 8
        return values, size

    send_rows(((None, values) for values in _rows(db, table, sent)), table=table.name, columns=table.columns,
              send=send, packing=Packing(
                  rows_per_statement=max(1, limits.params // len(table.columns)), encode=encode,
                  fits=lambda stmts, nbytes: stmts <= budget and nbytes * 2 <= limits.request_bytes))
    return loaded
