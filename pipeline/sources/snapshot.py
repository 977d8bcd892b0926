"""The initial snapshot: publication, slot + exported snapshot, parallel copy, resumable.

Steps (each source change printed and recorded for ``teardown``):

1. Check the replica belongs to this source; create the publication (once).
2. Translate the schema and create the replica tables (``translators``).
3. A detached keeper (:mod:`pipeline.keeper`) creates the pgoutput slot with an
   exported snapshot and holds it. Workers import it and copy each table
   (:mod:`pipeline.copier`); a table is marked done in the same SQLite
   transaction as its last rows.
4. The slot's consistent LSN becomes the replica's position: streaming starts
   there, so nothing is lost or applied twice.

A rerun after a crash imports the same snapshot while its keeper still holds
it and skips finished tables. When the snapshot is gone it says so, drops the
slot, empties the tables and starts a clean new snapshot.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.pipeline import preflight, state
from pg2edge.pipeline.events import ChangeEvent, Item, Op, SnapshotBegin, SnapshotEnd, SnapshotRows, SourceInfo
from pg2edge.pipeline.publication import setup_publication, slot_change
from pg2edge.pipeline.remote.url import RemoteTarget
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sources import keeper
from pg2edge.pipeline.sources.copier import CopySpec, copy_tables, snapshot_connection
from pg2edge.pipeline.sources.replication import drop_slot
from pg2edge.translators.codec import row_codec
from pg2edge.translators.ddl import apply_ddl, plan_ddl
from pg2edge.translators.introspect import introspect
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class SnapshotReport:
    slot: str
    publication: str
    consistent_lsn: int
    tables: dict[str, int] = field(default_factory=dict)  # rows copied now, per source table
    skipped_done: list[str] = field(default_factory=list)
    not_replicated: list[tuple[str, str]] = field(default_factory=list)
    restarted: bool = False
    already_complete: bool = False
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def stream_names(db: apsw.Connection, *, slot: str | None, publication: str | None) -> state.StreamInfo:
    """The replica's slot and publication: recorded ones, else the given names, else new ones."""
    known = state.read_stream(db)
    if known:
        return known
    suffix = secrets.token_hex(4)
    return state.StreamInfo(slot=slot or f"pg2edge_{suffix}", publication=publication or f"pg2edge_{suffix}")


def published_tables(dsn: str, publication: str) -> list[tuple[str, str]]:
    with dsnlib.control(dsn) as conn:
        rows = conn.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s "
                            "ORDER BY 1, 2", (publication,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def _snapshot_alive(dsn: str, snapshot: str) -> bool:
    """True while the exported snapshot can still be imported (its keeper holds it).

    Only PostgreSQL's answer "invalid snapshot identifier" means gone; any other
    error (the server unreachable, say) is raised rather than taken as a reason
    to throw the copied tables away.
    """
    try:
        snapshot_connection(dsn, snapshot).close()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.ObjectNotInPrerequisiteState):
        return False
    return True


def _make_encoder(table: Any, options: TranslateConfig) -> Callable[[Sequence[str | None]], tuple[Any, ...]]:

    return row_codec(table, options=options).encode_row_text


def _estimated_rows(dsn: str, tables: Sequence[tuple[str, str]]) -> dict[str, int]:
    with dsnlib.control(dsn) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace").fetchall()
    return {name: int(n) for name, n in rows if name in {f"{s}.{t}" for s, t in tables}}


SPLIT_ROWS = 200_000  # tables bigger than this are copied in key-range slices by several workers
INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4


def key_slices(dsn: str, table: Any, *, jobs: int, estimated_rows: int) -> list[tuple[str | None, int | None, int | None]]:
    """[(key, low, high)] slices covering the table: several for a big table with a one-column integer
    key, else one unbounded slice. The ends are open, so rows outside the sampled min/max are copied too."""
    pk = tuple(getattr(table, "primary_key", ()) or ())
    col = next((c for c in table.columns if len(pk) == 1 and c.name == pk[0]), None)
    if jobs < 2 or estimated_rows < SPLIT_ROWS or col is None or col.type_oid not in INTEGER_OIDS:
        return [(None, None, None)]

    with dsnlib.control(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(
            k=sql.Identifier(col.name), t=sql.Identifier(table.schema, table.name))).fetchone()
    low, high = (row or (None, None))
    if low is None or high is None or high - low < jobs:
        return [(None, None, None)]
    step = (high - low + 1) // jobs
    bounds = [low + i * step for i in range(1, jobs)]
    edges: list[int | None] = [None, *bounds, None]
    return [(col.name, edges[i], edges[i + 1]) for i in range(jobs)]


def prepare_tables(dsn: str, db: apsw.Connection, tables: Sequence[tuple[str, str]], *,
                   options: TranslateConfig, say: Say) -> dict[str, Any]:
    """Introspect the published tables, create the missing replica tables; returns qualified -> Table."""

    with dsnlib.control(dsn) as conn:
        schema = introspect(conn, schemas=sorted({s for s, _ in tables}), tables=[t for _, t in tables])
    model = {t.qualified: t for t in schema.tables}
    plan = plan_ddl(schema, options=options)
    for finding in plan.findings:
        say(f"schema finding: {finding}")
    existing = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    if not any(name for name in existing if not name.startswith(("_pg2edge", "sqlite_", "libsql_"))):
        if not isinstance(db, apsw.Connection):  # a remote replica: a request re-sent after a lost answer
            from pg2edge.pipeline.remote.upload import if_not_exists  # must not fail on what the first made

            plan = dataclasses.replace(plan, statements=[if_not_exists(s) for s in plan.statements])
        apply_ddl(db, plan)
    return model


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_snapshot(*, dsn: str, target: str | Path | RemoteTarget, tables: str | Sequence[str] | None = None,
                 jobs: int = 2, options: TranslateConfig | None = None, slot: str | None = None,
                 publication: str | None = None, allow_replica_identity_full: bool = False,
                 say: Say = print, on_progress: Callable[[CopySpec, int], None] | None = None,
                 slot_timeout: float = 60.0, capture: bool = True, client: Any = None) -> SnapshotReport:
    """Take (or resume) the initial snapshot of ``dsn`` into the replica file ``target``, or straight into a
    remote libSQL target (a RemoteTarget, through ``client``, a HranaClient: ``pipeline.remote.direct``)."""
    started = time.monotonic()
    options = options or TranslateConfig()
    remote = isinstance(target, RemoteTarget)
    writer: Any = None
    if isinstance(target, RemoteTarget):
        from pg2edge.pipeline.remote.direct import open_direct

        if client is None:
            raise ValueError("run_snapshot into a remote target needs its HranaClient")
        db: Any = open_direct(client)
        replica = target.label
        # wal_level, privileges, identity, --tables: all before a source change is made
        identity = preflight.check_snapshot_remote(dsn=dsn, db=db, tables=tables,
                                                   allow_replica_identity_full=allow_replica_identity_full)
    else:
        replica = str(target)
        # target, wal_level, privileges, identity, --tables: all before a file or a source change is made
        identity = preflight.check_snapshot(dsn=dsn, target=replica, tables=tables,
                                            allow_replica_identity_full=allow_replica_identity_full).identity
        db = open_replica(replica)
    try:
        state.check_source(db, identity)
        names = stream_names(db, slot=slot, publication=publication)
        run = state.read_run(db)
        if run and run.status is state.RunStatus.DONE:
            return SnapshotReport(slot=names.slot, publication=names.publication,
                                  consistent_lsn=run.consistent_lsn, already_complete=True)
        if run:
            keeper.adopt(db, run)  # at once: a keeper in its crash grace now follows this run (pipeline.keeper)
        report = SnapshotReport(slot=names.slot, publication=names.publication, consistent_lsn=0)
        if state.read_stream(db) is None:
            result = setup_publication(dsn, publication=names.publication, tables=tables,
                                       allow_replica_identity_full=allow_replica_identity_full, replica=db)
            for change in result.changes:
                say(f"source change: {change.description} (undo: {change.undo_sql})")
            report.not_replicated = list(result.selection.skipped)
            with db:
                state.write_source(db, identity)
                state.write_stream(db, names)
                state.write_record(db, "source", "selection",  # a table created later that matches is followed
                                   {"tables": tables if tables is None or isinstance(tables, str) else list(tables)})
            if capture:  # before the slot exists: no DDL after its consistent point goes unseen
                from pg2edge.pipeline.ddl_capture import install_capture

                install_capture(dsn, slot=names.slot, replica=db, say=say)
        published = published_tables(dsn, names.publication)
        model = prepare_tables(dsn, db, published, options=options, say=say)

        target_of = {q: sqlite_table_name(t.schema, t.name) for q, t in model.items()}
        resume = run is not None and run.snapshot is not None and _snapshot_alive(dsn, run.snapshot)
        if run and not resume:
            say(f"the exported snapshot {run.snapshot} of the interrupted snapshot run is gone: "
                "starting a clean new snapshot (replica tables emptied, slot recreated)")
            report.restarted = True
            drop_slot(dsn, names.slot, missing_ok=True)
            with db:
                for q in model:
                    db.execute(f"DELETE FROM {quote_ident(target_of[q])}")
                    state.write_table(db, state.TableState(table=q))
        if resume:
            assert run is not None and run.snapshot is not None
            kept = keeper.KeptSnapshot(slot=names.slot, consistent_lsn=run.consistent_lsn,
                                       snapshot=run.snapshot, pid=run.keeper_pid or 0)
            say(f"resuming snapshot {kept.snapshot}: finished tables are kept")
        else:
            if not report.restarted:  # a run killed before it recorded its keeper may have left the slot
                drop_slot(dsn, names.slot, missing_ok=True, terminate_holder=True)
            kept = keeper.start_keeper(dsn=dsn, slot=names.slot, replica=replica, timeout=slot_timeout,
                                       token=target.token if isinstance(target, RemoteTarget) else None)
            with dsnlib.control(dsn) as conn:
                change = slot_change(conn, names.slot)
            say(f"source change: {change.description} (undo: {change.undo_sql})")
            with db:
                state.record_source_changes(db, [change])
                state.write_run(db, state.SnapshotRun(status=state.RunStatus.COPYING, snapshot=kept.snapshot,
                                                      consistent_lsn=kept.consistent_lsn, keeper_pid=kept.pid,
                                                      coordinator_pid=os.getpid()))
        report.consistent_lsn = kept.consistent_lsn
        done = {name for name, ts in state.read_tables(db).items() if ts.snapshot is state.SnapshotStatus.DONE}
        estimates = _estimated_rows(dsn, published)
        specs: list[CopySpec] = []
        encoder: Callable[[Any, TranslateConfig], Any] = _make_encoder
        if remote:  # the workers also turn the values into Hrana JSON (pipeline.remote.direct)
            from pg2edge.pipeline.remote.direct import hrana_row_encoder

            encoder = hrana_row_encoder
        with db:
            for q, table in model.items():
                if q in done:
                    report.skipped_done.append(q)
                    continue

                codec = row_codec(table, options=options)
                db.execute(f"DELETE FROM {quote_ident(target_of[q])}")  # rows of an interrupted copy
                state.write_table(db, state.TableState(table=q, snapshot=state.SnapshotStatus.COPYING, snapshot_lsn=kept.consistent_lsn))
                for key, low, high in key_slices(dsn, table, jobs=jobs, estimated_rows=estimates.get(q, 0)):
                    specs.append(CopySpec(
                        source_schema=table.schema, source_table=table.name, source_columns=tuple(codec.columns),
                        target_table=target_of[q], target_columns=tuple(codec.columns),
                        encoder_factory=functools.partial(encoder, table, options),
                        estimated_rows=estimates.get(q, 0), partitioned=bool(getattr(table, "partitioned", False)),
                        key=key, low=low, high=high))

        def table_done(conn: apsw.Connection, spec: CopySpec, rows: int) -> None:
            state.write_table(conn, state.TableState(table=spec.label, snapshot=state.SnapshotStatus.DONE,
                                                     snapshot_lsn=kept.consistent_lsn, rows_copied=rows))

        if remote:
            from pg2edge.pipeline.remote.direct import RemoteWriter

            writer = RemoteWriter(client, snapshot_lsn=kept.consistent_lsn)
        try:
            copied = copy_tables(dsn=dsn, snapshot=kept.snapshot, specs=specs, db=None if remote else db, jobs=jobs,
                                 on_table_done=table_done, on_progress=on_progress, writer=writer)
        except BaseException:
            keeper.hold_for_resume(db)  # stopping in order: the keeper keeps the snapshot for a rerun
            raise
        report.tables = dict(copied.rows)
        with db:
            state.write_position(db, state.Position(commit_lsn=kept.consistent_lsn, end_lsn=kept.consistent_lsn))
            state.write_run(db, state.SnapshotRun(status=state.RunStatus.DONE, snapshot=kept.snapshot,
                                                  consistent_lsn=kept.consistent_lsn, keeper_pid=kept.pid))
        keeper.stop_keeper(kept.pid)
        report.seconds = time.monotonic() - started
        return report
    finally:
        if not remote:  # a remote replica's connection is the caller's client
            db.close()


# -- the snapshot as a stream of items (for sinks that take rows: the Kafka publisher) ----------
SNAPSHOT_CHUNK = 5_000


def _published_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[list[str], list[str]]:
    """Published columns (not dropped, not generated) and the key (primary key or identity index)."""
    rel = psycopg.sql.SQL("{}.{}").format(psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)).as_string(conn)
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", (rel,)).fetchall()]
    key = [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND (i.indisprimary OR i.indisreplident) "
        "ORDER BY i.indisprimary DESC, array_position(i.indkey::int2[], a.attnum)", (rel,)).fetchall()]
    return cols, list(dict.fromkeys(key))


def snapshot_items(dsn: str, *, snapshot: str, begin: SnapshotBegin,
                   tables: Sequence[tuple[str, str]], say: Say = print) -> Iterator[Item]:
    """The snapshot as items: SnapshotBegin, SnapshotRows (``op: "r"`` events, PostgreSQL text values read
    with the codec's session settings, in chunks), SnapshotEnd. Reads through :func:`snapshot_connection`."""
    lsn = begin.snapshot_lsn
    now_ms = int(time.time() * 1000)
    yield begin
    conn = snapshot_connection(dsn, snapshot)
    try:
        for schema, table in tables:
            cols, key = _published_columns(conn, schema, table)
            info = SourceInfo(lsn=lsn, commit_lsn=lsn, tx_id=None, ts_ms=now_ms, schema=schema, table=table,
                              snapshot=True)
            stmt = psycopg.sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
                psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, cols)), psycopg.sql.Identifier(schema),
                psycopg.sql.Identifier(table))
            chunk: list[ChangeEvent] = []
            n = 0
            with conn.cursor() as cur, cur.copy(stmt) as copy:
                for values in copy.rows():
                    after = dict(zip(cols, values, strict=True))
                    chunk.append(ChangeEvent(Op.READ, None, after, info, {k: after[k] for k in key}))
                    if len(chunk) >= SNAPSHOT_CHUNK:
                        n += len(chunk)
                        yield SnapshotRows(tuple(chunk))
                        chunk = []
            if chunk:
                n += len(chunk)
                yield SnapshotRows(tuple(chunk))
            say(f"snapshot: {schema}.{table}: {n} rows")
    finally:
        conn.close()
    yield SnapshotEnd(lsn)
