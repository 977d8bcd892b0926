"""The direct snapshot of a remote target: PostgreSQL rows straight into libSQL over Hrana, no staging file.

``run_snapshot`` (pipeline/sources/snapshot.py) takes a :class:`RemoteTarget`
as its target and does what it does for a file (preflight, publication, slot +
exported snapshot held by the keeper, translated DDL, parallel COPY workers
that encode rows with the one codec), with the remote as the replica:

* every state record (source, stream, source changes, run, tables, position)
  is written on the remote through :class:`RemoteConnection` (buffered writes
  sent as one atomic Hrana batch), so the keeper, a rerun and ``status`` read
  the run from the remote itself;
* rows go through :class:`RemoteWriter`: per table, large multi-row
  ``INSERT`` statements, many per request, each request ONE atomic batch that
  also records the table's progress (``rows_copied`` in its ``table`` state
  record) and is guarded by the progress it was planned on (a request re-sent
  after a lost answer is refused, never applied twice). The request holding a
  table's last rows marks it done; a rerun with the same exported snapshot
  skips done tables and recopies an interrupted one (its rows deleted first,
  in one batch with its reset progress);
* the position is written last, with the run marked done: until then the
  remote holds no position, so ``sync`` knows the snapshot is not complete.

The copy workers read, encode each row with the codec and turn it into Hrana
JSON arguments (:func:`hrana_row_encoder`) while this process only assembles
requests and sends them, so reading and sending overlap (the queue between
them holds a few batches per worker).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from pg2edge.pipeline import state
from pg2edge.pipeline.remote.connection import RemoteConnection
from pg2edge.pipeline.remote.errors import RemoteError, RemoteSQLError, RemoteTooLarge
from pg2edge.pipeline.remote.hrana import Encoded, HranaClient, Stmt, value_text
from pg2edge.pipeline.remote.upload import (
    FOREIGN_KEYS_OFF,
    MAX_VARIABLES,
    REMOTE_STATE_DDL,
    ROWS_PER_STATEMENT,
    UPLOAD_SCOPE,
    state_upsert,
)
from pg2edge.pipeline.sources.copier import CopySpec
from pg2edge.translators.codec import row_codec
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

_T = quote_ident(state.STATE_TABLE)
# fails the batch (NOT NULL) unless the table's stored progress is the one this request was planned on
_GUARD = (f"INSERT INTO {_T} (scope, name, value, updated_at) SELECT 'guard', ?, NULL, '' WHERE "
          f"(SELECT json_extract(value, '$.rows_copied') FROM {_T} WHERE scope = 'table' AND name = ?) IS NOT ?")
REQUEST_BYTES = 1 << 20  # big enough that per-request costs vanish, small enough to be re-sent quickly


def hrana_row_encoder(table: Any, options: Any) -> Callable[[Sequence[str | None]], str]:
    """The copy workers' encoder for a remote target (``CopySpec.encoder_factory``, built in the worker): a
    PostgreSQL text row -> the table codec's values -> their Hrana JSON arguments, comma-joined."""
    encode = row_codec(table, options=options).encode_row_text

    def hrana(row: Sequence[str | None]) -> str:
        return ",".join([value_text(v) for v in encode(row)])

    return hrana


def open_direct(client: HranaClient) -> RemoteConnection:
    """The remote as the snapshot's replica: its state table created; refused by name when it holds tables
    pg2edge did not write, or a staged snapshot's upload in progress."""
    if FOREIGN_KEYS_OFF not in client.batch_prelude:  # rows arrive table by table, like the file copy
        client.batch_prelude.append(FOREIGN_KEYS_OFF)
    db = RemoteConnection(client.target, client=client)
    has_state = bool(db.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?",
                                (state.STATE_TABLE,)).fetchone()[0])  # type: ignore[index]
    if not has_state:
        user = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql\\_%' ESCAPE '\\'")]
        if user:
            raise RemoteError(f"target {client.label} is not empty and is not a pg2edge replica (it has table(s) "
                              f"{', '.join(sorted(user)[:5])}); use an empty database")
        client.batch([(REMOTE_STATE_DDL, ())])
    elif db.execute(f"SELECT 1 FROM {_T} WHERE scope = ? LIMIT 1", (UPLOAD_SCOPE,)).fetchone():
        raise RemoteError(f"target {client.label}: a staged snapshot's upload is in progress; finish it with "
                          "`--snapshot-path staged` (or empty the database)")
    return db


def direct_in_progress(client: HranaClient) -> bool:
    """True when the remote holds a direct snapshot run that has not finished (no position yet)."""
    try:
        rows = client.execute(f"SELECT scope FROM {_T} WHERE (scope = ? AND name = ?) OR "
                              "(scope = 'position' AND name = 'applied')", (state.RUN_SCOPE, state.RUN_NAME)).rows
    except RemoteSQLError as exc:
        if "no such table" in str(exc):
            return False
        raise
    scopes = {r[0] for r in rows}
    return state.RUN_SCOPE in scopes and "position" not in scopes


class RemoteWriter:
    """Rows of the copy workers into the remote, per table, in atomic guarded batches (module docstring)."""

    def __init__(self, client: HranaClient, *, snapshot_lsn: int, rows_per_statement: int = ROWS_PER_STATEMENT,
                 request_bytes: int = REQUEST_BYTES) -> None:
        self.client = client
        self.snapshot_lsn = snapshot_lsn
        self.rows_per_statement = rows_per_statement
        self.budget = int(min(client.max_request_bytes * 0.9, request_bytes)) - 4096
        self.requests = 0
        self._tables: dict[str, _Table] = {}

    def _table(self, spec: CopySpec) -> _Table:
        t = self._tables.get(spec.label)
        if t is None:
            t = self._tables[spec.label] = _Table(spec, self.rows_per_statement)
        return t

    # -- the copier's writer protocol ----------------------------------------------------------
    def start(self) -> None:
        pass

    def rows(self, spec: CopySpec, rows: list[str]) -> None:
        """``rows``: each row's Hrana JSON arguments, comma-joined (:func:`hrana_row_encoder`)."""
        t = self._table(spec)
        for row in rows:
            est = len(row) + 4
            if est + t.head > self.budget:
                raise RemoteTooLarge(f"target {self.client.label}: a row of {spec.label} is {est} bytes as Hrana "
                                     f"JSON, over the {self.client.max_request_bytes}-byte request limit")
            if t.size + est + t.head > self.budget:
                self._flush(t, done=False)
            t.add(row, est)

    def table_done(self, spec: CopySpec, rows: int) -> None:
        self._flush(self._table(spec), done=True)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        self._tables.clear()  # what was not sent is not on the remote: a rerun recopies the table

    # -- one request ------------------------------------------------------------------------------
    def _flush(self, t: _Table, *, done: bool) -> None:
        stmts = t.take()
        count = t.pending_rows
        status = state.SnapshotStatus.DONE if done else state.SnapshotStatus.COPYING
        progress = state.TableState(table=t.spec.label, snapshot=status, snapshot_lsn=self.snapshot_lsn,
                                    rows_copied=t.sent + count)
        guard: Stmt = (_GUARD, ("snapshot", t.spec.label, t.sent))
        try:
            self.client.batch([guard, *stmts, state_upsert("table", t.spec.label, asdict(progress))])
        except RemoteSQLError as exc:
            if exc.step != 0:
                raise
            stored = self.client.execute(f"SELECT value FROM {_T} WHERE scope = 'table' AND name = ?",
                                         (t.spec.label,)).rows
            if not stored or json.loads(stored[0][0]).get("rows_copied") != t.sent + count:
                raise RemoteError(f"target {self.client.label}: the snapshot progress of {t.spec.label} moved "
                                  "under this snapshot (is another `pg2edge sync` writing to it?)") from None
            log.info("snapshot of %s: a retried request had landed already; not sent twice", t.spec.label)
        self.requests += 1
        t.sent += count
        t.pending_rows = 0


class _Table:
    """One table's rows not yet sent, as multi-row INSERT statements (arguments already Hrana JSON)."""

    def __init__(self, spec: CopySpec, rows_per_statement: int) -> None:
        self.spec = spec
        cols = spec.target_columns
        self.per_stmt = max(1, min(rows_per_statement, MAX_VARIABLES // max(1, len(cols))))
        self.prefix = (f"INSERT INTO {quote_ident(spec.target_table)} ({', '.join(map(quote_ident, cols))}) "
                       "VALUES ")
        self.marks = "(" + ", ".join("?" * len(cols)) + ")"
        self.head = len(self.prefix) + 64
        self.stmts: list[Stmt] = []
        self.args = Encoded()
        self.nrows = 0
        self.pending_rows = 0
        self.size = 0
        self.sent = 0

    def add(self, row: str, est: int) -> None:
        self.args.append(row)  # one row's arguments, already comma-joined: stmt_text joins rows with ","
        self.nrows += 1
        self.pending_rows += 1
        self.size += est + len(self.marks) + 2
        if self.nrows >= self.per_stmt:
            self._close_stmt()

    def _close_stmt(self) -> None:
        if self.nrows:
            self.stmts.append((self.prefix + ", ".join([self.marks] * self.nrows), self.args))
            self.size += self.head
            self.args, self.nrows = Encoded(), 0

    def take(self) -> list[Stmt]:
        self._close_stmt()
        stmts, self.stmts, self.size = self.stmts, [], 0
        return stmts


__all__ = ["RemoteWriter", "direct_in_progress", "hrana_row_encoder", "open_direct"]
