"""Apply batches of source Transactions to a SQLite replica, exactly once, in commit order.

One SQLite transaction per batch: the rows and the batch's last commit LSN are
written together (``_pg2edge_state``), so a crash leaves either all of a batch
or none of it, and a restart skips every transaction at or below the stored
commit LSN. Acknowledge ``ApplyResult.position.end_lsn`` to PostgreSQL only
after ``apply`` returns.

Values go through the table's encoder (``TableMapping.encode``: the value
codec's ``row_codec(table).encode_text``), never elsewhere. Unchanged TOAST
columns are never written. The replica's primary key (from the SQLite table
itself) is the conflict target; a table without one is matched on all the
columns of the old row (REPLICA IDENTITY FULL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import drift, resync, schema_apply, schema_fallback, schema_model, state, targetfile
from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.events import (
    ChangeEvent,
    Control,
    SchemaChange,
    SnapshotBegin,
    SnapshotEnd,
    SnapshotRows,
    Transaction,
    Watermark,
)
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.retry import QUEUE_TABLE, RetryPolicy, RetryQueue, counts, is_transient
from pg2edge.pipeline.sinks.statements import Planner, TableMapping, TargetTable, target_from_table_info
from pg2edge.pipeline.sinks.walsync import WalSync
from pg2edge.pipeline.sources.pgoutput import Relation
from pg2edge.translators.findings import Level
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

def _busy_waiter(timeout_ms: int) -> Callable[[int], bool]:
    """Wait for the write lock in 1 ms steps, up to ``timeout_ms``: SQLite's own busy timeout sleeps
    1, 2, 5 ... 100 ms, so a writer waiting behind another's short transaction (a resync's copy, the
    retry queue of another process) oversleeps by up to 100 ms."""
    state: dict[str, float] = {}

    def waiter(attempt: int) -> bool:
        now = time.monotonic()
        if attempt == 0:
            state["until"] = now + timeout_ms / 1000
        if now >= state["until"]:
            return False
        time.sleep(0.001)
        return True

    return waiter


def open_replica(path: str | Path, *, busy_timeout_ms: int = 5000, synchronous: str = "FULL") -> apsw.Connection:
    """Open a replica file in WAL mode with the state table present (errors name the file: targetfile)."""
    path = targetfile.check_replica_file(path).path  # a corrupt file or another app's database: named, untouched
    conn = None
    try:
        conn = apsw.Connection(str(path), statementcachesize=512)
        conn.setbusyhandler(_busy_waiter(busy_timeout_ms))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous if synchronous in ('FULL', 'NORMAL', 'EXTRA') else 'FULL'}")
        state.ensure_state_table(conn)
    except apsw.Error as exc:
        if conn is not None:
            conn.close()
        raise targetfile.sqlite_error(path, exc) from None
    return conn


class Applier:
    """Applies batches to one replica. ``mappings`` is keyed by (source schema, source table)."""

    def __init__(self, conn: apsw.Connection, mappings: Mapping[tuple[str, str], TableMapping], *,
                 options: TranslateConfig | None = None) -> None:
        self.conn = conn
        self.mappings = dict(mappings)
        self.options = options or TranslateConfig()  # the type rules schema changes are translated with
        self._resyncing: dict[str, Any] = {}
        # fallback mode (no event triggers): reads the source catalog of tables a Relation message changed
        self.describe_source: Callable[[tuple[str, str]], dict[str, Any]] | None = None
        self.mapping_for: Callable[[Any], TableMapping] | None = None  # a table created on the source
        self.can_recopy = True  # False without source access (a Kafka replica): re-copies pause by name
        self.after_schema_change: Callable[[SchemaChange], None] | None = None  # inside the batch transaction
        self._targets: dict[str, TargetTable] = {}
        self._planner = Planner()
        self.route: Callable[[ChangeEvent], None] = self.apply_event  # the retry queue may stand in between
        state.ensure_state_table(conn)

    @property
    def position(self) -> state.Position | None:
        return state.read_position(self.conn)

    def forget_tables(self) -> None:
        """Drop the cached table shapes (after a rollback: an ALTER TABLE may have been undone)."""
        self._targets.clear()

    # -- batches ----------------------------------------------------------------
    def apply(self, batch: Sequence[Transaction], *, kafka: dict[str, Any] | None = None,
              check_lsn: bool = True) -> ApplyResult:
        """Apply whole transactions in one SQLite transaction; returns counts and the new position.

        ``kafka`` (topic, partition, offset of the batch's last record) is stored in the
        position with the data; ``check_lsn=False`` applies snapshot rows whose LSN is not a commit.
        """
        result = ApplyResult()
        pos = state.read_position(self.conn)
        last = pos.commit_lsn if pos else -1
        todo = []
        for txn in batch:
            if check_lsn and txn.commit_lsn <= last:
                result.skipped += 1
                continue
            todo.append(txn)
            last = txn.commit_lsn
        result.position = pos
        if not todo:
            return result
        self.conn.execute("BEGIN IMMEDIATE")
        saved = dict(self.mappings)  # a schema change in the batch rekeys and reshapes them
        try:
            tables = state.read_tables(self.conn)
            self._check_resyncs()
            for txn in todo:
                self._apply_txn(txn, tables, result)
            final = todo[-1]
            result.position = state.Position(
                commit_lsn=final.commit_lsn, end_lsn=final.end_lsn, xid=final.xid,
                kafka=kafka if kafka is not None else (pos.kafka if pos else None),
                commit_ts_ms=final.commit_ts, watermark_lsn=max(final.end_lsn, (pos.watermark_lsn or 0) if pos else 0))
            state.write_position(self.conn, result.position)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # SQLITE_FULL (and others) may have rolled back already
                self.conn.execute("ROLLBACK")
            self._targets.clear()  # an ALTER TABLE may have been rolled back
            if any(t.schema_changes for t in todo):  # back to the shapes the rolled-back state records
                self.mappings = saved
                schema_model.use_baselines(self.conn, self.mappings)
                self._resyncing = resync.pending(self.conn)
            raise
        result.applied = len(todo)
        return result

    def apply_repairs(self, events: Sequence[ChangeEvent]) -> int:
        """Apply row events (validator repairs) without touching the stored position.

        Runs inside the caller's open transaction when there is one (so the caller can hold the write
        lock while it reads the source), else in its own; returns the number of events applied.
        """
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            for ev in events:
                self.apply_event(ev)
            if own:
                self.conn.execute("COMMIT")
        except BaseException:
            if own and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._targets.clear()
            raise
        return len(events)

    def _apply_txn(self, txn: Transaction, tables: dict[str, state.TableState], result: ApplyResult) -> None:
        covered = schema_apply.described_by_changes(txn)
        for rel in txn.relations:
            if (rel.schema, rel.name) not in covered:  # a schema change described it at its position
                self._relation(rel, txn, tables, result)
        for ev, change in schema_apply.interleave(txn):
            if change is not None:
                self.schema_change(change, txn, tables, result)
                continue
            assert ev is not None
            name = f"{ev.source.schema}.{ev.source.table}"
            if name in self._resyncing:  # re-copy under way: kept for the swap (pipeline/resync.py)
                resync.buffer_event(self.conn, name, txn.commit_lsn, ev)
                result.paused_events += 1
                continue
            ts = tables.get(name)
            if ts is not None and ts.paused:
                result.paused_events += 1
                continue
            self.route(ev)
            result.rows += 1

    # -- schema changes (event-trigger messages) ----------------------------------------------
    def schema_change(self, change: SchemaChange, txn: Transaction, tables: dict[str, state.TableState],
                      result: ApplyResult) -> None:
        """Follow one source DDL statement at its position, inside the batch's transaction."""
        names = {f"{r[1]}.{r[2]}" for r in change.catalog.get("rels", ())}
        names |= {f"{d.get('schema')}.{d.get('name')}" for d in change.dropped}
        for name in names & set(self._resyncing):
            resync.buffer_schema_change(self.conn, name, txn.commit_lsn, change)
        schema_model.adopt_baselines(self.conn, change)
        found = schema_apply.follow(self, change, commit_lsn=txn.commit_lsn, tables=tables,
                                    can_recopy=self.can_recopy)
        if self.after_schema_change is not None:
            self.after_schema_change(change)
        for f in found:
            log.log(logging.ERROR if f.level >= Level.ERROR else logging.INFO, "schema change: %s", f)
        result.findings.extend(found)
        self._resyncing = resync.pending(self.conn)

    def _check_resyncs(self) -> None:
        """A re-copy swapped a table in (another process): take its new shape."""
        now = resync.pending(self.conn)
        for name in set(self._resyncing) - set(now):
            schema, _, table = name.partition(".")
            mapping = self.mappings.get((schema, table))
            model = schema_model.baseline_model(self.conn, name)
            if mapping is not None and mapping.reshape is not None and model is not None:
                mapping.reshape(model)
            elif mapping is None and model is not None and self.mapping_for is not None:  # a table created
                self.mappings[(schema, table)] = self.mapping_for(model)
            self._targets.clear()
        self._resyncing = now

    # -- schema drift -------------------------------------------------------------
    def _relation(self, rel: Relation, txn: Transaction, tables: dict[str, state.TableState],
                  result: ApplyResult) -> None:
        name = f"{rel.schema}.{rel.name}"
        if (rel.schema, rel.name) not in self.mappings:
            if self.describe_source is not None and self._renamed(rel):  # fallback mode: RENAME TO, by oid
                result.findings.extend(schema_fallback.follow_relation(self, rel, self.describe_source,
                                                                    commit_lsn=txn.commit_lsn, tables=tables))
                return
            # PostgreSQL also describes a partition whose rows it publishes through the root
            # (publish_via_partition_root); only a row event for an unmapped table is an error.
            log.debug("relation %s has no replica table; ignored unless it carries rows", name)
            return
        ts = tables.get(name) or state.TableState(table=name)
        if ts.paused:
            return
        mapping = self._mapping(rel.schema, rel.name)
        plan = drift.plan(rel, ts, mapping, self._target(mapping.target).columns, commit_lsn=txn.commit_lsn)
        if self.describe_source is not None and plan.changed:
            result.findings.extend(schema_fallback.follow_relation(self, rel, self.describe_source,
                                                                commit_lsn=txn.commit_lsn, tables=tables))
            return
        plan.log()
        result.findings.extend(plan.findings)
        for sql, params in plan.statements:
            self.conn.execute(sql, params)
        if plan.added:
            self._targets.pop(mapping.target, None)
        if plan.state != tables.get(name):
            state.write_table(self.conn, plan.state)
            tables[name] = plan.state

    def _renamed(self, rel: Relation) -> bool:
        """A Relation message names a table this replica holds under another name (its oid, the message's
        relid, is a mapped table's baseline): a RENAME TO, seen at its position."""
        for qualified, record in schema_model.read_baselines(self.conn).items():
            schema, _, table = qualified.partition(".")
            if int(record.get("oid", -1)) == rel.relid and (schema, table) in self.mappings:
                return True
        return False

    # -- rows ---------------------------------------------------------------------
    def _mapping(self, schema: str, table: str) -> TableMapping:
        mapping = self.mappings.get((schema, table))
        if mapping is None:
            raise ApplyError(f"no replica table is mapped for source table {schema}.{table}")
        return mapping

    def _target(self, table: str) -> TargetTable:
        tgt = self._targets.get(table)
        if tgt is None:
            info = self.conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
            tgt = self._targets[table] = target_from_table_info(table, info)
        return tgt

    def apply_event(self, ev: ChangeEvent) -> None:
        """Apply one row change inside the caller's open transaction."""
        mapping = self._mapping(ev.source.schema, ev.source.table)
        tgt = self._target(mapping.target)
        try:
            for st in self._planner.plan(ev, mapping, tgt):
                self.conn.execute(st.sql, st.params)
                if st.must_change and self.conn.changes() == 0:
                    raise ApplyError(st.must_change)
        except apsw.Error as exc:
            raise ApplyError(f"{ev.op.name.lower()} on {tgt.table} key {dict(ev.key)!r} failed: "
                             f"{type(exc).__name__}: {exc}") from exc


class SqliteSink:
    """The SQLite file sink: the applier with the retry queue and DLQ composed in (:mod:`.retry`).

    A change that fails permanently is parked and its key blocked (later changes to it wait); a
    transient error (busy, locked, I/O) retries the whole batch in place with back-off. Control
    items: a watermark moves the position's watermark; the snapshot bounds and rows of a Kafka topic
    empty, fill and complete the tables (``mappings_for(publication)`` builds the tables and codecs
    for the publication a snapshot names).
    """

    def __init__(self, conn: apsw.Connection, mappings: Mapping[tuple[str, str], TableMapping] | None, *,
                 label: str = "replica", policy: RetryPolicy | None = None,
                 mappings_for: Callable[[str], Mapping[tuple[str, str], TableMapping]] | None = None,
                 options: TranslateConfig | None = None) -> None:
        self.conn, self.label = conn, label
        self.options = options
        self.queue = RetryQueue(conn, policy=policy)
        self.sync = WalSync(conn)  # commits are visible at once; acknowledged once the WAL is synced
        self.mappings_for = mappings_for
        self.applier: Applier | None = None
        if mappings is not None:
            self._use(mappings)

    def _use(self, mappings: Mapping[tuple[str, str], TableMapping]) -> Applier:
        applier = self.applier = Applier(self.conn, mappings, options=self.options)
        applier.route = lambda ev: self.queue.route(ev, applier.apply_event)
        return applier

    @property
    def mappings(self) -> dict[tuple[str, str], TableMapping]:
        return self.applier.mappings if self.applier is not None else {}

    @property
    def parked(self) -> int:
        return self.queue.parked

    # -- the sink protocol ---------------------------------------------------------------
    def position(self) -> state.Position | None:
        return state.read_position(self.conn)

    def durable(self, *, wait: bool = False) -> state.Position | None:
        return self.sync.durable(wait=wait)

    def apply(self, batch: Sequence[Transaction], *, check_lsn: bool = True) -> ApplyResult:
        """Apply whole transactions with their position; park what fails permanently, retry what is transient."""
        if self.applier is None:
            raise ApplyError(f"{self.label}: changes arrived before any snapshot-begin record (no tables yet): "
                             "was the topic written by pg2edge publish?")
        applier = self.applier
        cursor = batch[-1].cursor if batch else None
        delay = self.queue.policy.transient_delay
        careful = False
        started = time.monotonic()
        while True:
            self.queue.load_blocked()
            self.queue.careful = careful
            try:
                result = applier.apply(batch, kafka=dict(cursor) if cursor is not None else None, check_lsn=check_lsn)
                if result.position is not None:
                    self.sync.committed(result.position)
                return result
            except (ApplyError, apsw.Error) as exc:
                full = isinstance(exc, apsw.FullError) or isinstance(exc.__cause__, apsw.FullError)
                if full and time.monotonic() - started > self.queue.policy.full_disk_patience:
                    raise targetfile.sqlite_error(self.conn.filename, exc) from exc  # names the file; a rerun goes on
                if is_transient(exc):
                    log.warning("transient replica error (%s); retrying the batch in %.2f s", exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, self.queue.policy.transient_max_delay)
                    continue
                if careful or not isinstance(exc, ApplyError):
                    raise
                log.warning("%s; re-applying the batch with the failing change parked", exc)
                careful = True
            finally:
                self.queue.careful = False

    def control(self, item: Control) -> None:
        if isinstance(item, Watermark):
            state.advance_watermark(self.conn, item.lsn, cursor=item.cursor)
        elif isinstance(item, SnapshotRows):
            batch = Transaction(xid=0, commit_lsn=0, end_lsn=0, commit_ts=0, events=item.events, cursor=item.cursor)
            self.apply([batch], check_lsn=False)
        elif isinstance(item, SnapshotBegin):
            self._snapshot_begin(item)
        elif isinstance(item, SnapshotEnd):
            with self.conn:
                for ts in state.read_tables(self.conn).values():
                    state.write_table(self.conn, replace(ts, snapshot=state.SnapshotStatus.DONE))
                state.write_run(self.conn, state.SnapshotRun(status=state.RunStatus.DONE,
                                                             consistent_lsn=item.snapshot_lsn, via="kafka"))
                state.write_position(self.conn, state.Position(
                    commit_lsn=item.snapshot_lsn, end_lsn=item.snapshot_lsn,
                    kafka=dict(item.cursor) if item.cursor is not None else None))

    def _snapshot_begin(self, item: SnapshotBegin) -> None:
        partitions = int(item.partitioning.get("partitions") or 1)
        if partitions > 1:
            raise ConfigError(
                f"{self.label}: the topic is partitioned by tenant column {item.partitioning.get('column')!r} into "
                f"{partitions} partitions: consume it into tenant files with "
                "`pg2edge sync --from-kafka --tenant-pattern ...`")
        ident = state.SourceIdentity(system_identifier=item.system_identifier, database=item.database)
        state.check_source(self.conn, ident)
        if self.mappings_for is None:
            raise ConfigError(f"{self.label}: a snapshot-begin record arrived but this sink cannot build tables")
        applier = self._use(self.mappings_for(item.publication))
        with self.conn:
            state.write_source(self.conn, ident)
            state.write_stream(self.conn, state.StreamInfo(slot=item.slot, publication=item.publication))
            for mapping in applier.mappings.values():
                self.conn.execute(f"DELETE FROM {quote_ident(mapping.target)}")
            self.conn.execute(f"DELETE FROM {quote_ident(QUEUE_TABLE)}")
            for s, t in applier.mappings:
                state.write_table(self.conn, state.TableState(table=f"{s}.{t}", snapshot=state.SnapshotStatus.COPYING,
                                                              snapshot_lsn=item.snapshot_lsn))
            state.write_run(self.conn, state.SnapshotRun(status=state.RunStatus.COPYING,
                                                         consistent_lsn=item.snapshot_lsn, via="kafka"))
            state.write_position(self.conn, state.Position(
                commit_lsn=0, end_lsn=0, kafka=dict(item.cursor) if item.cursor is not None else None))

    def maintain(self) -> None:
        due = self.queue.next_due()
        if due is not None and due <= time.time() and self.applier is not None:
            self.drain()

    def drain(self, *, force_ids: Iterable[int] = ()) -> tuple[int, int]:
        """Retry the due (or ``force_ids``) queued changes; returns (applied, still queued)."""
        if self.applier is None:
            return 0, 0
        try:
            return self.queue.drain(self.applier.apply_event, force_ids=force_ids)
        except BaseException:
            self.applier.forget_tables()
            raise

    def queue_depths(self) -> dict[str, int]:
        return counts(self.conn)

    def close(self) -> None:
        """Sync what was applied; the caller owns the connection."""
        self.sync.durable(wait=True)
