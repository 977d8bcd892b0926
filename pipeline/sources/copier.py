"""Parallel table copy for the snapshot: COPY in worker processes, one apsw writer.

Each worker process imports the exported snapshot (``REPEATABLE READ`` +
``SET TRANSACTION SNAPSHOT``), streams one table at a time with
``COPY ... TO STDOUT`` (text format, decoded by psycopg's C parser), encodes
each row with the table's codec and sends bounded batches to the writer.
The writer (the calling process) inserts them with apsw in large
transactions. Queues are bounded, so memory stays flat whatever the table
size. A table is marked done by the caller's ``on_table_done`` inside the
same SQLite transaction as its last rows.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import apsw
import psycopg
from psycopg import sql

from pg2edge.dsn import codec_dsn, connect
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline.lifeline import die_with_parent
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

BATCH_ROWS = 5_000
COMMIT_ROWS = 100_000
QUEUE_BATCHES_PER_JOB = 4

RowEncoder = Callable[[Sequence[str | None]], Any]  # a tuple of SQLite values (a file), or what a writer takes


@dataclass(frozen=True)
class CopySpec:
    """One table to copy: source relation and columns, target table and an encoder factory.

    ``encoder_factory`` must be picklable (a module-level function or a
    functools.partial of one); it is called in the worker to build the row
    encoder, so codecs are never pickled per row.
    """

    source_schema: str
    source_table: str
    source_columns: tuple[str, ...]
    target_table: str
    target_columns: tuple[str, ...]
    encoder_factory: Callable[[], RowEncoder]
    estimated_rows: int = 0
    partitioned: bool = False  # read through the root (no ONLY) so every partition is included
    # One slice of a big table: rows whose integer key is in [low, high) (None = unbounded).
    # Slices of one table are copied by several workers at once; the table is done when all are.
    key: str | None = None
    low: int | None = None
    high: int | None = None

    @property
    def label(self) -> str:
        return f"{self.source_schema}.{self.source_table}"


@dataclass
class CopyResult:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class CopyWorkerError(Pg2EdgeError):
    """A copy worker failed; the message names the table and the cause."""


def _copy_sql(spec: CopySpec) -> bytes:

    cols = sql.SQL(", ").join(sql.Identifier(c) for c in spec.source_columns)
    only = sql.SQL("" if spec.partitioned else "ONLY ")
    where: list[sql.Composable] = []
    if spec.key is not None and spec.low is not None:
        where.append(sql.SQL("{} >= {}").format(sql.Identifier(spec.key), sql.Literal(spec.low)))
    if spec.key is not None and spec.high is not None:
        where.append(sql.SQL("{} < {}").format(sql.Identifier(spec.key), sql.Literal(spec.high)))
    condition = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
    stmt = sql.SQL("COPY (SELECT {} FROM {}{}.{}{}) TO STDOUT").format(
        cols, only, sql.Identifier(spec.source_schema), sql.Identifier(spec.source_table), condition)
    return stmt.as_bytes(None)


def snapshot_connection(dsn: str, snapshot: str | None) -> psycopg.Connection[Any]:
    """The one way to read a snapshot: a REPEATABLE READ, READ ONLY transaction that imported the exported
    ``snapshot`` (None: a fresh one), with the value codec's session settings (DateStyle, TimeZone, ...).

    Raises psycopg's InvalidParameterValue / ObjectNotInPrerequisiteState when the snapshot is gone."""

    conn = connect(codec_dsn(dsn), autocommit=False, application_name="pg2edge snapshot")
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if snapshot:
                cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    except BaseException:
        conn.close()
        raise
    return conn


def _worker(dsn: str, snapshot: str | None, tasks: Any, out: Any) -> None:
    """Worker process: take specs from ``tasks`` until None; send ('rows'|'done'|'error', ...)."""
    parent = mp.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)  # a SIGKILLed coordinator takes its workers along (no orphans)
    try:
        conn = snapshot_connection(dsn, snapshot)
    except Exception as exc:  # reported to the coordinator by name
        out.put(("error", "(connect)", f"{type(exc).__name__}: {exc}"))
        return
    try:
        while True:
            spec: CopySpec | None = tasks.get()
            if spec is None:
                break
            encode = spec.encoder_factory()
            batch: list[tuple[Any, ...]] = []
            count = 0
            with conn.cursor() as cur, cur.copy(_copy_sql(spec)) as copy:
                for row in copy.rows():
                    batch.append(encode(row))
                    if len(batch) >= BATCH_ROWS:
                        out.put(("rows", spec.label, batch))
                        count += len(batch)
                        batch = []
            if batch:
                out.put(("rows", spec.label, batch))
                count += len(batch)
            out.put(("done", spec.label, count))
    except Exception as exc:
        label = spec.label if "spec" in locals() and spec is not None else "(unknown)"
        out.put(("error", label, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def insert_sql(spec: CopySpec) -> str:
    cols = ", ".join(quote_ident(c) for c in spec.target_columns)
    marks = ", ".join("?" for _ in spec.target_columns)
    return f"INSERT INTO {quote_ident(spec.target_table)} ({cols}) VALUES ({marks})"


class ApswWriter:
    """The file writer: rows inserted with apsw in large transactions; a table is marked done (the
    caller's ``on_table_done``) in the same transaction as its last rows."""

    def __init__(self, db: apsw.Connection, on_table_done: Callable[[apsw.Connection, CopySpec, int], None] | None
                 ) -> None:
        self.db = db
        self.on_table_done = on_table_done
        self.in_txn = 0
        self._sql: dict[str, str] = {}

    def start(self) -> None:
        self.db.execute("BEGIN")

    def rows(self, spec: CopySpec, rows: list[tuple[Any, ...]]) -> None:
        stmt = self._sql.get(spec.label)
        if stmt is None:
            stmt = self._sql[spec.label] = insert_sql(spec)
        self.db.executemany(stmt, rows)
        self.in_txn += len(rows)
        if self.in_txn >= COMMIT_ROWS:
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")
            self.in_txn = 0

    def table_done(self, spec: CopySpec, rows: int) -> None:
        if self.on_table_done:
            self.on_table_done(self.db, spec, rows)
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")
        self.in_txn = 0

    def finish(self) -> None:
        self.db.execute("COMMIT")

    def abort(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


class RowWriter(Protocol):
    """Where the copied rows go: :class:`ApswWriter` (a file), or a remote writer
    (``pipeline.remote.direct``). ``table_done`` makes the table's last rows and its done mark durable
    together; ``abort`` drops whatever is not yet durable."""

    def start(self) -> None: ...
    def rows(self, spec: CopySpec, rows: list[Any]) -> None: ...
    def table_done(self, spec: CopySpec, rows: int) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...


def copy_tables(
    *,
    dsn: str,
    snapshot: str | None,
    specs: Sequence[CopySpec],
    db: apsw.Connection | None = None,
    jobs: int = 2,
    on_table_done: Callable[[apsw.Connection, CopySpec, int], None] | None = None,
    on_progress: Callable[[CopySpec, int], None] | None = None,
    writer: RowWriter | None = None,
) -> CopyResult:
    """Copy every spec into ``db`` (or through ``writer``); returns rows per table. Raises CopyWorkerError
    naming the table. Reading (worker processes) overlaps writing (this process): the queue between them
    holds a few batches per worker."""
    started = time.monotonic()
    result = CopyResult()
    if not specs:
        return result
    if writer is None:
        assert db is not None, "copy_tables needs db or writer"
        writer = ApswWriter(db, on_table_done)
    ctx = mp.get_context("spawn")  # not fork: callers (Prefect tasks, tests) run threads
    jobs = max(1, min(jobs, len(specs)))
    tasks = ctx.Queue()
    out = ctx.Queue(maxsize=QUEUE_BATCHES_PER_JOB * jobs)
    # Biggest tables first, so the slowest one starts early.
    for spec in sorted(specs, key=lambda s: -s.estimated_rows):
        tasks.put(spec)
    for _ in range(jobs):
        tasks.put(None)
    procs = [ctx.Process(target=_worker, args=(dsn, snapshot, tasks, out), daemon=True) for _ in range(jobs)]
    for proc in procs:
        proc.start()
    by_label = {s.label: s for s in specs}
    pending = {s.label for s in specs}
    slices_left = {label: sum(1 for s in specs if s.label == label) for label in pending}
    done_rows: dict[str, int] = {}
    try:
        writer.start()
        while pending:
            try:
                kind, label, payload = out.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    raise CopyWorkerError(f"a copy worker died (exit {dead[0].exitcode}) while copying "
                                          f"{', '.join(sorted(pending))}") from None
                continue
            if kind == "error":
                raise CopyWorkerError(f"copying {label} failed: {payload}")
            spec = by_label[label]
            if kind == "rows":
                writer.rows(spec, payload)
                result.rows[label] = result.rows.get(label, 0) + len(payload)
                if on_progress:
                    on_progress(spec, len(payload))
            elif kind == "done":
                result.rows.setdefault(label, 0)
                done_rows[label] = done_rows.get(label, 0) + int(payload)
                slices_left[label] -= 1
                if slices_left[label] > 0:
                    continue
                writer.table_done(spec, done_rows[label])
                pending.discard(label)
        writer.finish()
    except BaseException:
        writer.abort()
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=5)
    result.seconds = time.monotonic() - started
    return result
