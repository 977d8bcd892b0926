"""Re-copy chosen tables from a fresh exported snapshot while the others keep streaming.

Exactly once, without stopping the stream:

1. **Request** (a state record ``resync/<schema.table>``, written in a replica
   transaction): from then on the stream's applier *buffers* that table's
   changes (``_pg2edge_resync_buffer``, committed with the position) instead
   of applying them. A schema change that needs a re-copy requests it at its
   own stream position.
2. **Snapshot**: a temporary slot with an exported snapshot; its consistent
   LSN ``S`` is where the copy stands. ``S`` is taken after the request
   committed, so every change the buffer lacks is in the snapshot.
3. **Copy** into a shadow table (``_pg2edge_resync_<table>``), the schema
   translated from the snapshot's catalog, through the codec, in small
   transactions so the stream's writes interleave.
4. **Swap** (one SQLite transaction): drop the old table, rename the shadow,
   create the indexes, replay the buffered changes with commit LSN > ``S`` in
   order, clear the buffer and the request, unpause the table. Changes at or
   below ``S`` are already in the copy: applied exactly once.

A crash before the swap leaves the request and the buffer: run resync again
(a new snapshot; the buffered changes below its LSN are dropped at the swap).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import apsw
import psycopg

from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError, Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.events import ChangeEvent, SchemaChange
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

SCOPE = "resync"
BUFFER = "_pg2edge_resync_buffer"
SHADOW_PREFIX = "_pg2edge_resync_"
COPY_COMMIT_ROWS = 1_000  # rows per SQLite transaction of the copy (the stream's writes interleave)
COPY_YIELD_MIN, COPY_YIELD_RATIO = 0.005, 1.0  # after each copy transaction, the lock stays free this long

_BUFFER_DDL = (f"CREATE TABLE IF NOT EXISTS {quote_ident(BUFFER)} (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, "
               "commit_lsn INTEGER NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL)")


class ResyncError(Pg2EdgeError):
    """A resync cannot run (names the table and why)."""


# -- requests and the buffer (used by the stream's applier) ---------------------------------------------------
def request(conn: apsw.Connection, table: str, *, since_lsn: int, reason: str, add: bool = False) -> None:
    """Ask for ``table`` to be re-copied (``add``: a new table, added to the publication first); from now on
    its changes are buffered (caller's transaction)."""
    conn.execute(_BUFFER_DDL)
    if state.read_record(conn, SCOPE, table) is None:
        state.write_record(conn, SCOPE, table, {"since_lsn": since_lsn, "reason": reason, "add": add,
                                                "requested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def pending(conn: apsw.Connection) -> dict[str, dict[str, Any]]:
    """Tables waiting for a re-copy: ``{schema.table: {since_lsn, reason, requested_at}}``."""
    return state.read_scope(conn, SCOPE)


def buffer_event(conn: apsw.Connection, table: str, commit_lsn: int, event: ChangeEvent) -> None:
    conn.execute(f"INSERT INTO {quote_ident(BUFFER)} (tbl, commit_lsn, kind, item) VALUES (?, ?, 'row', ?)",
                 (table, commit_lsn, event.to_json()))


def buffer_schema_change(conn: apsw.Connection, table: str, commit_lsn: int, change: SchemaChange) -> None:
    conn.execute(f"INSERT INTO {quote_ident(BUFFER)} (tbl, commit_lsn, kind, item) VALUES (?, ?, 'schema', ?)",
                 (table, commit_lsn, change.to_json()))


def buffered(conn: apsw.Connection, table: str) -> int:
    try:
        row = conn.execute(f"SELECT count(*) FROM {quote_ident(BUFFER)} WHERE tbl = ?", (table,)).fetchone()
    except apsw.SQLError:
        return 0
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _immediate(db: apsw.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock first (waits on the busy timeout): a deferred one that
    read before writing fails at once when the stream committed in between (SQLITE_BUSY_SNAPSHOT)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# -- one re-copy at a time per replica ---------------------------------------------------------------------
OWNER = ("resync_run", "owner")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_owner(conn: apsw.Connection) -> int | None:
    """The pid of a resync process still running on this replica, else None."""
    rec = state.read_record(conn, *OWNER)
    pid = int(rec["pid"]) if rec and rec.get("pid") else None
    return pid if pid is not None and _alive(pid) else None


# -- the re-copy ----------------------------------------------------------------------------------------------
@dataclass
class ResyncReport:
    tables: dict[str, int] = field(default_factory=dict)  # rows copied
    snapshot_lsn: int = 0
    replayed: int = 0  # buffered changes applied after the copy
    dropped: int = 0  # buffered changes already in the copy
    seconds: float = 0.0


def _resolve(db: apsw.Connection, tables: str | Sequence[str]) -> list[tuple[str, str]]:
    names = [t.strip() for t in (tables.split(",") if isinstance(tables, str) else tables) if t.strip()]
    if not names:
        raise ConfigError("resync: name at least one table (--tables a,b)")
    known = set(state.read_tables(db)) | {t for t, v in pending(db).items() if v.get("add")}
    out = []
    for name in names:
        qualified = name if "." in name else f"public.{name}"
        if qualified not in known:
            raise ResyncError(f"resync: {qualified} is not a table of this replica")
        schema, _, table = qualified.partition(".")
        out.append((schema, table))
    return out


def resync_tables(*, dsn: str, target: str | Path, tables: str | Sequence[str],
                  options: TranslateConfig | None = None, say: Callable[[str], None] = print,
                  slot_timeout: float = 60.0) -> ResyncReport:
    """Re-copy ``tables`` of the replica ``target`` from a fresh snapshot while its sync keeps streaming."""
    from pg2edge.pipeline.sinks.sqlite import open_replica
    from pg2edge.pipeline.sinks.walsync import WalSync
    from pg2edge.pipeline.sources.replication import create_slot_with_snapshot, drop_slot

    started = time.monotonic()
    options = options or TranslateConfig()
    db = open_replica(target)
    # the copy's many small transactions do not each wait for an fsync while holding the write lock the
    # stream needs; the WAL is synced once the swap committed (before this returns)
    sync = WalSync(db)
    report = ResyncReport()
    try:
        chosen = _resolve(db, tables)
        db.execute("BEGIN IMMEDIATE")  # read then write, with the stream writing concurrently
        try:
            owner = running_owner(db)
            if owner is not None and owner != os.getpid():
                raise ResyncError(f"resync: another resync of {target} is running (pid {owner}); wait for it")
            state.write_record(db, *OWNER, {"pid": os.getpid(), "tables": [f"{s}.{t}" for s, t in chosen]})
            pos = state.read_position(db)
            for s, t in chosen:
                request(db, f"{s}.{t}", since_lsn=pos.commit_lsn if pos else 0, reason="pg2edge resync")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        _publish_added(dsn, db, chosen, say)
        slot = f"pg2edge_rs_{secrets.token_hex(4)}"
        kept = create_slot_with_snapshot(dsn, slot, timeout=slot_timeout)
        try:
            report.snapshot_lsn = kept.consistent_lsn
            say(f"resync: snapshot {kept.snapshot_name} at LSN {kept.consistent_lsn} (temporary slot {slot})")
            models = _copy(dsn, db, kept.snapshot_name, chosen, options, report, say)
        finally:
            kept.conn.close()
            drop_slot(dsn, slot, missing_ok=True)
        _swap(db, dsn, chosen, models, options, report, say)
        sync.committed(report)
        sync.durable(wait=True)
    finally:
        db.close()
    report.seconds = time.monotonic() - started
    return report


def _publish_added(dsn: str, db: apsw.Connection, chosen: list[tuple[str, str]], say: Callable[[str], None]) -> None:
    """Tables created on the source after the snapshot: add them to the replica's publication (a source
    change; dropping the publication at teardown undoes it). Runs after their request, so the stream
    buffers every change the publication starts sending."""
    from psycopg import sql

    from pg2edge.dsn import control

    stream = state.read_stream(db)
    wanted = [(s, t) for s, t in chosen if pending(db).get(f"{s}.{t}", {}).get("add")]
    if stream is None or not wanted:
        return
    with control(dsn) as conn:
        have = {(r[0], r[1]) for r in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (stream.publication,))}
        for s, t in wanted:
            if (s, t) in have:
                continue
            say(f"source change: add {s}.{t} to publication {stream.publication} (created on the source; "
                "teardown drops the publication)")
            conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                sql.Identifier(stream.publication), sql.Identifier(s, t)))


def _copy(dsn: str, db: apsw.Connection, snapshot: str, chosen: list[tuple[str, str]], options: TranslateConfig,
          report: ResyncReport, say: Callable[[str], None]) -> dict[tuple[str, str], Any]:
    from psycopg import sql

    from pg2edge.pipeline.ddl_capture import describe_tables
    from pg2edge.pipeline.schema_model import describe
    from pg2edge.pipeline.sources.copier import snapshot_connection
    from pg2edge.translators.codec import row_codec
    from pg2edge.translators.ddl import plan_table
    from pg2edge.translators.naming import sqlite_table_name

    models: dict[tuple[str, str], Any] = {}
    conn = snapshot_connection(dsn, snapshot)
    try:
        oids = [int(r[0]) for r in conn.execute(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([s for s, _ in chosen], [t for _, t in chosen])).fetchall()]
        cat = describe_tables(conn, oids)
        described = {(d.table.schema, d.table.name): d for d in
                     describe(SchemaChange(lsn=0, tag="resync", statement="", catalog=cat)).values()}
        translated = {f"{s}.{t}" for s, t in (tuple(q.split(".", 1)) for q in state.read_tables(db))}
        for key in chosen:
            d = described.get(key)
            if d is None:
                raise ResyncError(f"resync: {key[0]}.{key[1]} does not exist on the source")
            models[key] = d
            table = d.table
            target = sqlite_table_name(table.schema, table.name)
            shadow = SHADOW_PREFIX + target
            create, _indexes, findings = plan_table(table, options=options, translated=translated)
            for f in findings:
                say(f"schema finding: {f}")
            codec = row_codec(table, options=options)
            with _immediate(db):
                db.execute(f"DROP TABLE IF EXISTS {quote_ident(shadow)}")
                db.execute(f"CREATE TABLE {quote_ident(shadow)} (" + create[len(f"CREATE TABLE {quote_ident(target)} ("):])
            insert = (f"INSERT INTO {quote_ident(shadow)} ({', '.join(map(quote_ident, codec.columns))}) "
                      f"VALUES ({', '.join('?' * len(codec.columns))})")
            stmt = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
                sql.SQL(", ").join(map(sql.Identifier, codec.columns)), sql.Identifier(table.schema),
                sql.Identifier(table.name))
            rows: list[tuple[Any, ...]] = []
            n = 0
            with conn.cursor() as cur, cur.copy(stmt) as copy:
                for values in copy.rows():
                    rows.append(codec.encode_row_text(values))
                    if len(rows) >= COPY_COMMIT_ROWS:
                        held = time.perf_counter()
                        with _immediate(db):
                            db.executemany(insert, rows)
                        n += len(rows)
                        rows = []
                        # leave the write lock free for a while: a stream writer waiting in SQLite's busy
                        # handler (sleeping 1, 2, 5, 10 ... ms) must find it free, or it starves
                        time.sleep(max(COPY_YIELD_MIN, (time.perf_counter() - held) * COPY_YIELD_RATIO))
            if rows:
                with _immediate(db):
                    db.executemany(insert, rows)
                n += len(rows)
            report.tables[table.qualified] = n
            say(f"resync: {table.qualified}: {n} rows copied")
    except psycopg.Error as exc:
        raise ResyncError(f"resync: copying {', '.join(f'{s}.{t}' for s, t in chosen)} failed: {exc}") from exc
    finally:
        conn.close()
    return models


def _swap(db: apsw.Connection, dsn: str, chosen: list[tuple[str, str]], models: dict[tuple[str, str], Any],
          options: TranslateConfig, report: ResyncReport, say: Callable[[str], None]) -> None:
    from pg2edge.pipeline.mappings import TableEncoder
    from pg2edge.pipeline.schema_apply import relation_columns
    from pg2edge.pipeline.schema_model import baseline_record, write_baseline
    from pg2edge.pipeline.sinks.sqlite import Applier
    from pg2edge.pipeline.sinks.statements import TableMapping
    from pg2edge.translators.ddl import plan_table
    from pg2edge.translators.naming import sqlite_table_name

    translated = set(state.read_tables(db))
    mappings = {}
    for key, d in models.items():
        enc = TableEncoder(dsn, d.table, options)
        mappings[key] = TableMapping(target=sqlite_table_name(*key), encode=enc.encode, column_type=enc.column_type,
                                     skip=enc.skip, reshape=enc.use, encode_many=enc.encode_many)
    applier = Applier(db, mappings, options=options)
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = state.read_tables(db)
        for key, d in models.items():
            qualified = f"{key[0]}.{key[1]}"
            target = sqlite_table_name(*key)
            _create, index_sql, _ = plan_table(d.table, options=options, translated=translated)
            db.execute(f"DROP TABLE IF EXISTS {quote_ident(target)}")
            db.execute(f"ALTER TABLE {quote_ident(SHADOW_PREFIX + target)} RENAME TO {quote_ident(target)}")
            for stmt in index_sql:
                db.execute(stmt)
            write_baseline(db, qualified, baseline_record(d))
            ts = tables.get(qualified) or state.TableState(table=qualified)
            ts = replace(ts, paused=False, pause_reason=None, paused_at_lsn=None, columns=relation_columns(d.table),
                         snapshot=state.SnapshotStatus.DONE, snapshot_lsn=report.snapshot_lsn,
                         rows_copied=report.tables.get(qualified, 0))
            state.write_table(db, ts)
            tables[qualified] = ts
            db.execute(f"DELETE FROM {state._T} WHERE scope = ? AND name = ?", (SCOPE, qualified))
            _drop_parked(db, qualified)
            items = db.execute(  # (seq, commit LSN, 'row'|'schema', JSON)
                f"SELECT seq, commit_lsn, kind, item FROM {quote_ident(BUFFER)} WHERE tbl = ? ORDER BY seq",
                (qualified,)).fetchall()
            for _seq, lsn, kind, text in items:
                item = str(text)
                if int(str(lsn)) <= report.snapshot_lsn:
                    report.dropped += 1
                    continue
                if kind == "row":
                    applier.apply_event(ChangeEvent.from_json(item))
                else:
                    from pg2edge.pipeline.schema_apply import follow

                    for f in follow(applier, SchemaChange.from_json(item), commit_lsn=int(str(lsn)), tables=tables):
                        say(f"finding: {f}")
                report.replayed += 1
            db.execute(f"DELETE FROM {quote_ident(BUFFER)} WHERE tbl = ?", (qualified,))
        db.execute(f"DELETE FROM {state._T} WHERE scope = ? AND name = ?", OWNER)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    say(f"resync: swapped in {', '.join(f'{s}.{t}' for s, t in chosen)}; replayed {report.replayed} buffered "
        f"change(s), {report.dropped} already in the copy")


# -- the sync daemon runs requested re-copies itself -------------------------------------------------------
def _resync_main(dsn: str, target: str, tables: list[str], options: TranslateConfig | None) -> None:
    logging.basicConfig(level=logging.INFO)
    resync_tables(dsn=dsn, target=target, tables=tables, options=options, say=log.info)


class AutoResync:
    """Wraps the sync's source: its periodic work also starts a re-copy process for requested tables (a
    schema change PostgreSQL computed per row), one at a time, in a separate process (arguments pass
    through a pipe, never argv), so the stream keeps applying the other tables meanwhile."""

    RETRY_AFTER = 30.0

    def __init__(self, source: Any, *, dsn: str, target: str | Path, db: apsw.Connection,
                 options: TranslateConfig | None, say: Callable[[str], None], interval: float = 1.0,
                 watch: Sequence[tuple[str, str]] = (), watch_interval: float = 30.0) -> None:
        self.source, self.dsn, self.target, self.db = source, dsn, str(target), db
        self.options, self.say, self.interval = options, say, interval
        self.label = source.label
        self._proc: Any = None
        self._checked = 0.0
        self._not_before = 0.0
        self.watch, self.watch_interval = list(watch), watch_interval  # fallback mode: tables to compare
        self._watched: float | None = None
        self._named: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def tick(self) -> None:
        self.source.tick()
        now = time.monotonic()
        if self.watch and (self._watched is None or now - self._watched >= self.watch_interval):
            self._watched = now
            self._check_unseen()
        if now - self._checked < self.interval:
            return
        self._checked = now
        if self._proc is not None:
            if self._proc.is_alive():
                return
            if self._proc.exitcode != 0:
                self.say(f"resync process exited with {self._proc.exitcode}; retrying in {self.RETRY_AFTER:.0f} s")
                self._not_before = now + self.RETRY_AFTER
            self._proc = None
        if now < self._not_before:
            return
        tables = sorted(pending(self.db))
        if not tables or running_owner(self.db) is not None:  # none asked, or `pg2edge resync` is at work
            return
        import multiprocessing as mp

        self.say(f"resync: re-copying {', '.join(tables)} from a fresh snapshot while the others stream")
        self._proc = mp.get_context("spawn").Process(target=_resync_main, daemon=True,
                                                     args=(self.dsn, self.target, tables, self.options))
        self._proc.start()

    def _check_unseen(self) -> None:
        from pg2edge.pipeline.schema_fallback import unseen_changes

        try:
            found = unseen_changes(self.dsn, self.db, self.watch, self.options or TranslateConfig())
        except (psycopg.Error, Pg2EdgeError) as exc:
            log.warning("schema comparison (fallback mode) not done: %s", exc)
            return
        for f in found:
            if str(f) not in self._named:
                self._named.add(str(f))
                self.say(f"finding: {f}")

    def finished(self, reached: Any) -> str | None:
        """Not caught up while a requested re-copy has not been swapped in."""
        if pending(self.db) or (self._proc is not None and self._proc.is_alive()):
            return None
        result: str | None = self.source.finished(reached)
        return result

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()  # the request and the buffer stay: the next run re-copies
            self._proc.join(timeout=10)
        self.source.close()


def _drop_parked(db: apsw.Connection, qualified: str) -> None:
    """Changes of the table waiting in the retry queue are older than the copy: the copy supersedes them
    (dead letters stay, as the record of what failed)."""
    from pg2edge.pipeline.sinks.retry import QUEUE_TABLE

    try:
        db.execute(f"DELETE FROM {quote_ident(QUEUE_TABLE)} WHERE source_table = ? AND status <> 'dead'",
                   (qualified,))
    except apsw.SQLError:
        pass  # no retry queue in this replica yet


def describe_pending(conn: apsw.Connection) -> list[str]:
    """Lines for ``status``: each table waiting for a re-copy and its buffered changes."""
    return [f"{t}: waiting for a re-copy since LSN {v.get('since_lsn')} ({v.get('reason')}); "
            f"{buffered(conn, t)} change(s) buffered; run: pg2edge resync --tables {t}"
            for t, v in pending(conn).items()]


__all__ = ["AutoResync", "ResyncError", "ResyncReport", "buffer_event", "buffer_schema_change", "buffered", "describe_pending",
           "pending", "request", "resync_tables"]

