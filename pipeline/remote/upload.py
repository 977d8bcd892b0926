"""Upload a finished local SQLite replica into a remote libSQL database, resumable per table.

The snapshot of a remote target is taken the fast local way first (the file
snapshot: exported snapshot, parallel copy, codec) into a staging file; this
module then sends that file to the remote over Hrana:

1. the schema, read from the staging file's ``sqlite_schema`` (so exactly the
   translator's DDL), tables first (``IF NOT EXISTS``);
2. the rows of each table in large multi-row ``INSERT`` statements, many per
   request, each request an atomic batch that also records how far the table
   got (``upload/<table>`` in the remote ``_pg2edge_state``): after a crash the
   upload resumes at the first row not yet there, nothing is sent twice;
3. indexes, triggers and views (after the rows: building an index once is
   faster than maintaining it per row);
4. last, in one atomic batch, every state record of the staging file (source,
   stream, tables, snapshot run, source changes) and the position. Until that
   batch lands the remote has no position, so ``sync`` knows the snapshot is
   incomplete and resumes it.

A remote that already holds a pg2edge replica of another source, or tables
pg2edge did not write, is refused by name.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.remote.errors import RemoteError, RemoteSQLError, RemoteTooLarge
from pg2edge.pipeline.remote.hrana import Encoded, HranaClient, Stmt, encode_value, value_text
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

UPLOAD_SCOPE = "upload"
MAX_VARIABLES = 32_000  # SQLite's default limit is 32766 bound parameters per statement
ROWS_PER_STATEMENT = 500
FOREIGN_KEYS_OFF = "PRAGMA foreign_keys = OFF"
_T = quote_ident(state.STATE_TABLE)
# WITHOUT ROWID is not portable (tursodb refuses it): the remote state table is a plain rowid table
REMOTE_STATE_DDL = (f"CREATE TABLE IF NOT EXISTS {_T} (scope TEXT NOT NULL, name TEXT NOT NULL, "
                    "value TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (scope, name))")
_CREATE = re.compile(r"^\s*CREATE\s+(UNIQUE\s+INDEX|INDEX|TABLE|VIEW|TRIGGER|VIRTUAL\s+TABLE)\s+(?!IF\s+NOT)", re.I)

Progress = Callable[[str, int, int], None]  # table, rows sent so far, rows in the table


@dataclass
class UploadReport:
    tables: dict[str, int] = field(default_factory=dict)  # rows sent now, per table
    resumed: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    already_complete: bool = False

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def state_upsert(scope: str, name: str, value: Any) -> Stmt:
    """The statement that writes one state record (same shape as ``state.write_record``)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return (f"INSERT INTO {_T} (scope, name, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (scope, name, json.dumps(value, sort_keys=True), now))


def if_not_exists(sql: str) -> str:
    """``CREATE TABLE x`` -> ``CREATE TABLE IF NOT EXISTS x`` (likewise INDEX, VIEW, TRIGGER)."""
    return _CREATE.sub(lambda m: f"CREATE {m.group(1)} IF NOT EXISTS ", sql, count=1)


def _schema(local: apsw.Connection) -> tuple[list[tuple[str, str, str]], list[str]]:
    """([(table, sql, kind)], [index/trigger/view sql]) of the staging file, without pg2edge's own tables."""
    shadow = {r[1] for r in local.execute("PRAGMA table_list") if r[2] == "shadow"}
    tables, later = [], []
    for kind, name, sql in local.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'trigger' THEN 2 "
            "ELSE 3 END, rowid"):
        if name in shadow or name == state.STATE_TABLE:
            continue
        if kind == "table":
            virtual = sql.lstrip().upper().startswith("CREATE VIRTUAL")
            tables.append((name, if_not_exists(sql), "virtual" if virtual else "table"))
        else:
            later.append(if_not_exists(sql))
    return tables, later


def _remote_state(client: HranaClient) -> dict[tuple[str, str], Any]:
    try:
        rows = client.execute(f"SELECT scope, name, value FROM {_T}").rows
    except RemoteSQLError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    return {(r[0], r[1]): json.loads(r[2]) for r in rows}


def check_target(label: str, staged: state.SourceIdentity | None, known: state.SourceIdentity | None, *,
                 ours: bool, user_tables: Callable[[], list[str]], error: type[Exception] = RemoteError,
                 empty: str = "an empty database") -> None:
    """Before an upload writes: refuse, as ``error``, a target that holds another source's replica (``known``
    is not ``staged``), or that is not ``ours`` (no pg2edge record) and has tables pg2edge did not write
    (``user_tables()``, asked only then). Every remote target's upload (libSQL here, D1) checks this way."""
    if known is not None and staged is not None and known != staged:
        raise error(f"target {label} holds a pg2edge replica of database {known.database!r} "
                    f"(cluster {known.system_identifier}), not of {staged.database!r}")
    if ours:
        return
    user = user_tables()
    if user:
        raise error(f"target {label} is not empty and is not a pg2edge replica (it has table(s) "
                    f"{', '.join(sorted(user)[:5])}); use {empty}")


def _check_remote(client: HranaClient, local: apsw.Connection, remote: dict[tuple[str, str], Any]) -> None:
    known = remote.get(("source", "identity"))
    check_target(client.label, state.read_source(local), None if known is None else state.SourceIdentity(**known),
                 ours=bool(remote), user_tables=lambda: [str(r[0]) for r in client.execute(
                     "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                     "AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql\\_%' ESCAPE '\\'").rows])


Sender = Callable[[list[Stmt], int, Any, bool], None]  # statements, rows in them, last row's key, final


@dataclass(frozen=True)
class Packing:
    """What one transport allows in a request of an upload: the part of the loop that differs per target."""

    rows_per_statement: int  # rows in one multi-row INSERT (its bound-value limit over the column count)
    fits: Callable[[int, int], bool]  # (statements, estimated bytes) of a request -> it may be sent
    encode: Callable[[Sequence[Any]], tuple[Sequence[Any], int]]  # a row's values -> (arguments, estimated bytes)
    too_large: Callable[[Any, int], None] | None = None  # (key, bytes) of a row no request holds: raise; None: send it alone
    new_args: Callable[[], list[Any]] = list


def send_rows(rows: Iterable[tuple[Any, Sequence[Any]]], *, table: str, columns: Sequence[str], packing: Packing,
              send: Sender) -> None:
    """The upload loop of every remote target (libSQL below, D1: ``pipeline.d1.upload``): a table's rows
    (``(key, values)`` in resume order) as multi-row INSERTs, as many per request as ``packing.fits``;
    ``send(statements, rows, key of the last row, final)`` sends each request with its progress record,
    and is called once more at the end with ``final`` (maybe with no statements)."""
    head = f"INSERT INTO {quote_ident(table)} ({', '.join(map(quote_ident, columns))}) VALUES "
    marks = "(" + ", ".join("?" * len(columns)) + ")"
    overhead = len(head) + 64
    stmts: list[Stmt] = []
    closed = size = nrows = stmt_size = 0  # rows and bytes of the closed statements; of the open one
    args = packing.new_args()
    last: Any = None

    def close_statement() -> None:
        nonlocal args, closed, size, nrows, stmt_size
        if nrows:
            stmts.append((head + ", ".join([marks] * nrows), args))
            closed += nrows
            size += stmt_size + overhead + nrows * (len(marks) + 2)
            args, nrows, stmt_size = packing.new_args(), 0, 0

    def flush(final: bool) -> None:
        nonlocal stmts, closed, size
        close_statement()
        if stmts or final:
            send(stmts, closed, last, final)
        stmts, closed, size = [], 0, 0

    encode, fits, too_large, per = packing.encode, packing.fits, packing.too_large, packing.rows_per_statement
    for key, values in rows:  # the hot loop of an upload: locals only
        encoded, est = encode(values)
        if not fits(len(stmts) + 1, size + stmt_size + est + overhead):
            if too_large is not None and not fits(1, est + overhead):
                too_large(key, est)
            if stmts or nrows:
                flush(False)
        args.extend(encoded)
        nrows += 1
        stmt_size += est
        last = key
        if nrows >= per:
            close_statement()
    flush(True)


def _hrana_row(values: Sequence[Any]) -> tuple[list[Any], int]:
    encoded = [value_text(v) for v in values]
    return encoded, sum(map(len, encoded)) + len(encoded)


def upload_replica(local_path: str | Path, client: HranaClient, *, rows_per_statement: int = ROWS_PER_STATEMENT,
                   on_progress: Progress | None = None, say: Callable[[str], None] = print) -> UploadReport:
    """Send a finished staging replica file to ``client``'s database; resumes an interrupted upload."""
    started = time.monotonic()
    report = UploadReport()
    # the staging file was filled without foreign-key checks (rows arrive table by table, in key order);
    # sqld enforces them per connection by default, so the upload does what the file copy did
    if FOREIGN_KEYS_OFF not in client.batch_prelude:
        client.batch_prelude.append(FOREIGN_KEYS_OFF)
    local = apsw.Connection(str(local_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        if state.read_position(local) is None:
            raise RemoteError(f"staging replica {local_path} has no position: its snapshot is not complete")
        remote = _remote_state(client)
        _check_remote(client, local, remote)
        if ("position", "applied") in remote and not any(s == UPLOAD_SCOPE for s, _ in remote):
            report.already_complete = True
            return report
        tables, later = _schema(local)
        ident = state.read_source(local)
        first: list[Stmt] = [(REMOTE_STATE_DDL, ()), *((sql, ()) for _, sql, _ in tables)]
        first.append(state_upsert(UPLOAD_SCOPE, "", {"started": True}))  # marks the remote as ours, in progress
        if ident is not None:
            first.append(state_upsert("source", "identity", {"system_identifier": ident.system_identifier,
                                                              "database": ident.database}))
        client.batch(first)
        for name, _, kind in tables:
            if kind == "virtual":
                continue  # an FTS index is filled by its triggers or rebuilt below
            done = remote.get((UPLOAD_SCOPE, name)) if name else None
            if done and done.get("done"):
                continue
            if done:
                report.resumed.append(name)
            report.tables[name] = _upload_table(client, local, name, done or {}, rows_per_statement,
                                                on_progress, report)
        if later:
            client.batch([(sql, ()) for sql in later])
        final: list[Stmt] = []
        for scope, name, value, _ in local.execute(f"SELECT scope, name, value, updated_at FROM {_T} ORDER BY scope, name"):
            final.append(state_upsert(scope, name, json.loads(value)))
        final.append((f"DELETE FROM {_T} WHERE scope = ?", (UPLOAD_SCOPE,)))
        client.batch(final)
        report.requests += 1
        report.seconds = time.monotonic() - started
        return report
    finally:
        local.close()


def _upload_table(client: HranaClient, local: apsw.Connection, table: str, done: dict[str, Any],
                  rows_per_statement: int, on_progress: Progress | None, report: UploadReport) -> int:
    q = quote_ident(table)
    cols = [r[1] for r in local.execute(f"PRAGMA table_xinfo({q})") if r[6] in (0,)]  # no generated columns
    without_rowid = bool(local.execute("SELECT 1 FROM pragma_table_list WHERE name = ? AND wr = 1",
                                       (table,)).fetchone())
    total: int = local.execute(f"SELECT count(*) FROM {q}").fetchall()[0][0]  # type: ignore[assignment]
    per_stmt = max(1, min(rows_per_statement, MAX_VARIABLES // max(1, len(cols))))
    col_list = ", ".join(map(quote_ident, cols))
    sent = int(done.get("rows", 0))
    last = done.get("last_rowid")
    if without_rowid:  # no rowid to resume from: ordered by the primary key, resumed by count
        pk = [r[1] for r in sorted((r for r in local.execute(f"PRAGMA table_info({q})") if r[5]), key=lambda r: r[5])]
        cursor = local.execute(f"SELECT NULL, {col_list} FROM {q} ORDER BY {', '.join(map(quote_ident, pk))} "
                               "LIMIT -1 OFFSET ?", (sent,))
    else:
        cursor = local.execute(f"SELECT rowid, {col_list} FROM {q} WHERE rowid > ? ORDER BY rowid",
                               (last if last is not None else -(1 << 63),))
    now = 0
    started_table = bool(done)
    budget = int(client.max_request_bytes * 0.95) - 4096

    def too_large(key: Any, est: int) -> None:
        raise RemoteTooLarge(f"target {client.label}: a row of {table} (rowid {key}) is {est} bytes as "
                             f"Hrana JSON, over the {client.max_request_bytes}-byte request limit")

    def send(stmts: list[Stmt], count: int, key: Any, final: bool) -> None:
        nonlocal sent, now, started_table, last
        if not without_rowid and key is not None:
            last = key
        progress = {"rows": sent + count, "last_rowid": last, "done": final}
        # the guard makes a re-sent request (its answer lost, the session retried) fail instead of
        # inserting the rows twice; the stored progress then says whether it landed
        guard = (f"INSERT INTO {_T} (scope, name, value, updated_at) SELECT 'guard', ?, NULL, '' WHERE "
                 f"(SELECT json_extract(value, '$.rows') FROM {_T} WHERE scope = ? AND name = ?) IS NOT ?",
                 ("upload", UPLOAD_SCOPE, table, sent if started_table else None))
        try:
            client.batch([guard, *stmts, state_upsert(UPLOAD_SCOPE, table, progress)])
        except RemoteSQLError as exc:
            if exc.step != 0:
                raise
            stored = client.execute(f"SELECT value FROM {_T} WHERE scope = ? AND name = ?", (UPLOAD_SCOPE, table)).rows
            if not stored or json.loads(stored[0][0]).get("rows") != sent + count:
                raise RemoteError(f"target {client.label}: the upload progress of {table} moved under this "
                                  "upload (is another `pg2edge sync` uploading to it?)") from None
            log.info("upload of %s: a retried request had landed already; not sent twice", table)
        report.requests += 1
        sent += count
        now += count
        started_table = True
        if on_progress:
            on_progress(table, sent, total)

    send_rows(((row[0], row[1:]) for row in cursor), table=table, columns=cols, send=send, packing=Packing(
        rows_per_statement=per_stmt, fits=lambda _stmts, nbytes: nbytes <= budget, encode=_hrana_row,
        too_large=too_large, new_args=Encoded))
    return now


__all__ = ["REMOTE_STATE_DDL", "UPLOAD_SCOPE", "UploadReport", "Packing", "check_target", "encode_value", "if_not_exists",
           "send_rows", "state_upsert",
           "upload_replica"]
