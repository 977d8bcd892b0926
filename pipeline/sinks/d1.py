"""The D1 sink: whole source transactions into Cloudflare D1 through the pg2edge Worker, exactly once.

A batch of source transactions becomes ONE request to the Worker, which runs
it with one ``env.DB.batch()`` (one D1 transaction)::

    position guard          -- fails the batch unless D1 still holds the position it was planned on
    statements of txn 1..n  -- the shared planner's SQL (sinks.statements), values bound
    parked changes          -- INSERT INTO _pg2edge_queue (retry queue / DLQ, inside D1)
    position row            -- _pg2edge_state, written by pipeline.state

A crash at any moment leaves all of it or none of it in D1; a batch sent again
after a lost answer fails on its guard, and the sink skips what D1 already has.

Limits (pipeline.d1.limits): batches are cut at transaction boundaries to stay
under ``batch_statements`` statements and ``request_bytes`` per request. A
source transaction is never split: a larger one goes alone, and one over
``transaction_bytes`` (32 MB) stops the stream with :class:`TransactionTooLarge`
naming its largest table and its size (in parts it would be visible half-done).

Bad changes: a statement over a D1 limit (a row over 2 MB, a statement over
100 KB or 100 parameters) is parked in the DLQ before anything is sent; a
statement D1 refuses is located by the Worker (the batch was rolled back), its
change parked in the retry queue, and the batch sent again without it. Later
changes to a parked key wait behind it (``waiting``); other keys flow.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import drift, schema_apply, schema_model, state
from pg2edge.pipeline.d1.client import D1Client, D1Connection, for_state
from pg2edge.pipeline.d1.errors import D1LimitError, D1Refused
from pg2edge.pipeline.d1.guards import changed_guard, is_guard_failure, position_guard, schema_statements
from pg2edge.pipeline.d1.limits import (
    DEFAULT_LIMITS,
    D1Limits,
    Stmt,
    check_columns,
    check_statement,
    fits_cheaply,
    statement_size,
)
from pg2edge.pipeline.errors import ApplyError, StateError
from pg2edge.pipeline.events import (
    ChangeEvent,
    Control,
    Op,
    SchemaChange,
    SnapshotBegin,
    SnapshotEnd,
    SnapshotRows,
    Transaction,
    Watermark,
)
from pg2edge.pipeline.schema_sql import RecordingFollower, SchemaRecorder
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.retry import QUEUE_TABLE, QueueStatus, RetryPolicy, event_keys, list_queue
from pg2edge.pipeline.sinks.statements import Planner, TableMapping, TargetTable, target_from_table_info
from pg2edge.pipeline.sources.pgoutput import Relation
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

_Q = quote_ident(QUEUE_TABLE)


DEFER_FOREIGN_KEYS: Stmt = ("PRAGMA defer_foreign_keys = on", [])  # D1 enforces foreign keys; defer to COMMIT


class TransactionTooLarge(D1LimitError):
    """One source transaction does not fit one D1 batch; applied in parts it would be visible half-done."""


@dataclass(slots=True)
class _Plan:
    """One D1 batch: its statements, which change each statement belongs to, and what it changes in state."""

    stmts: list[Stmt] = field(default_factory=list)
    owners: list[ChangeEvent | None] = field(default_factory=list)
    musts: dict[int, str] = field(default_factory=dict)  # changed-guard index -> the ApplyError text
    rows: int = 0
    paused: int = 0
    parked: int = 0
    findings: list[Finding] = field(default_factory=list)
    tables: dict[str, state.TableState] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    shapes: dict[str, TargetTable] = field(default_factory=dict)  # tables this batch alters (ADD COLUMN)
    merged: set[int] = field(default_factory=set)  # statements that carry several changes (multi-row upserts)
    ddl: dict[int, tuple[int, int]] = field(default_factory=dict)  # statement index -> the schema change it follows
    altered: list[Stmt] = field(default_factory=list)  # drift's ADD COLUMNs so far (a later shadow replays them)
    mark: int = 0  # where the statements of the change being planned start

    @property
    def size(self) -> int:
        return sum(statement_size(s, p) for s, p in self.stmts)


class D1Sink:
    """Applies batches to D1 through the Worker; the retry queue and DLQ live in D1 (``_pg2edge_queue``)."""

    def __init__(self, client: D1Client, mappings: Mapping[tuple[str, str], TableMapping], *,
                 policy: RetryPolicy | None = None, limits: D1Limits = DEFAULT_LIMITS,
                 batch_changes: int = 10_000, options: TranslateConfig | None = None) -> None:
        self.client = client
        self.options = options or TranslateConfig()  # the type rules schema changes are translated with
        self._recorder: SchemaRecorder | None = None  # while a batch with a schema change is planned
        self.batch_changes = batch_changes  # row changes planned into one request (then cut to fit)
        self.conn = D1Connection(client)
        self._state = for_state(self.conn)  # pipeline.state and the queue readers take it as a connection
        self.label = client.label
        self.mappings = dict(mappings)
        self.policy = policy or RetryPolicy()
        self.limits = limits
        self.planner = Planner()
        self.parked = 0
        self._checked_sql: set[str] = set()  # SQL texts already checked against D1's statement limits
        self._targets: dict[str, TargetTable] = {}
        client.batch(schema_statements())
        for (schema, table), mapping in self.mappings.items():
            check_columns(f"{schema}.{table}", len(self._target(mapping.target).columns), limits=limits)
        self._pos: state.Position | None = state.read_position(self._state)
        self._tables = state.read_tables(self._state)
        self._blocked: set[str] = set()
        self._next_due: float | None = None
        self._depths: dict[str, int] = {}
        self._read_queue()

    # -- the sink protocol ---------------------------------------------------------------
    def position(self) -> state.Position | None:
        return self._pos

    def durable(self, *, wait: bool = False) -> state.Position | None:
        """Durable as soon as applied (the Worker's D1 batch is durable when it answers)."""
        return self.position()

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        result = ApplyResult(position=self._pos)
        last = self._pos.commit_lsn if self._pos else -1
        todo = []
        for txn in batch:
            if txn.commit_lsn <= last:
                result.skipped += 1
                continue
            todo.append(txn)
            last = txn.commit_lsn
        start = 0
        while start < len(todo):  # cut at transaction boundaries into batches that fit D1's limits
            end, changes = start + 1, len(todo[start].events)
            while end < len(todo) and changes + len(todo[end].events) <= self.batch_changes:
                changes += len(todo[end].events)
                end += 1
            start += self._send(todo[start:end], result)
        result.position = self._pos
        return result

    def control(self, item: Control) -> None:
        if isinstance(item, Watermark):
            self._watermark(item.lsn)
        elif isinstance(item, (SnapshotBegin, SnapshotRows, SnapshotEnd)):
            raise ConfigError(f"target {self.label}: a D1 replica cannot bootstrap from a Kafka topic; "
                              "sync it from PostgreSQL (pg2edge sync --source DSN --target d1+https://...)")

    def maintain(self) -> None:
        if self._next_due is not None and self._next_due <= time.time():
            self.drain()

    def close(self) -> None:
        self.client.close()

    # -- one batch ----------------------------------------------------------------------------
    def _fits(self, plan: _Plan) -> bool:
        return len(plan.stmts) <= self.limits.batch_statements and plan.size * 2 <= self.limits.request_bytes

    def _send(self, txns: list[Transaction], result: ApplyResult) -> int:
        """Send one batch of (a prefix of) ``txns``: fewer transactions while they do not fit one request;
        park a change D1 refuses and send again; after a stale guard, skip what D1 has. Returns how many
        of ``txns`` were dealt with."""
        saved = dict(self.mappings)  # a schema change rekeys and reshapes them: back to these before a re-plan
        ddl = any(t.schema_changes for t in txns)
        try:
            return self._send_batch(txns, result, saved if ddl else None)
        except BaseException:
            if ddl:
                self._restore_mappings(saved)
            raise

    def _restore_mappings(self, saved: dict[tuple[str, str], TableMapping]) -> None:
        """Back to the names and shapes D1's (unchanged) baselines record."""
        self.mappings = dict(saved)
        schema_model.use_baselines(self._state, self.mappings)

    def _send_batch(self, txns: list[Transaction], result: ApplyResult,
                    saved: dict[tuple[str, str], TableMapping] | None) -> int:
        failed: dict[int, tuple[str, bool]] = {}  # id(change) -> (error, straight to the DLQ)
        refused: dict[tuple[int, int], str] = {}  # schema change (commit LSN, LSN) -> D1's refusal
        coalesce = True
        consumed = len(txns)
        first = True
        while True:
            if saved is not None and not first:
                self._restore_mappings(saved)
            first = False
            plan = self._plan(txns, failed, coalesce=coalesce, refused=refused)
            if len(txns) > 1 and (not self._fits(plan) or plan.size > self.limits.transaction_bytes):
                txns = txns[:len(txns) // 2]
                consumed = len(txns)
                continue
            size = plan.size
            if size > self.limits.transaction_bytes:
                raise self._too_large(txns, size)
            try:
                answer = self.client.batch(plan.stmts, locate=True)
            except D1Refused as exc:
                index = exc.index
                if index == 0 and is_guard_failure(str(exc)):
                    self._pos = state.read_position(self._state)
                    self._tables = state.read_tables(self._state)
                    self._read_queue()
                    last = self._pos.commit_lsn if self._pos else -1
                    log.warning("target %s: D1 already holds position %s (an answer was lost); skipping what "
                                "it has", self.label, last)
                    kept = [t for t in txns if t.commit_lsn > last]
                    result.skipped += len(txns) - len(kept)
                    if not kept:  # all of it is in D1: the mappings as this plan left them are D1's
                        self._targets.clear()
                        return consumed
                    txns = kept
                    continue
                if index is not None and index in plan.ddl:  # D1 refused a schema change's statement
                    log.warning("target %s refused a schema change (%s); pausing its tables", self.label, exc)
                    refused[plan.ddl[index]] = str(exc)
                    continue
                if index in plan.merged:  # several changes in that statement: send them one by one to find it
                    coalesce = False
                    continue
                owner = plan.owners[index] if index is not None and index < len(plan.owners) else None
                if owner is None or id(owner) in failed:
                    raise ApplyError(f"target {self.label}: D1 refused a batch statement that is not a row "
                                     f"change: {exc}") from exc
                failed[id(owner)] = (plan.musts.get(index, str(exc)) if index is not None else str(exc), False)
                log.warning("target %s: %s; sending the batch again with that change parked", self.label, exc)
                continue
            break
        self._pos = self._new_position(txns[-1], self._pos)
        queue_changed = bool(plan.parked) or plan.blocked != self._blocked  # parked, or a TRUNCATE dropped some
        self._tables, self._blocked = plan.tables, plan.blocked
        if plan.ddl:
            self._targets.clear()  # renamed or dropped tables: the batch's shapes are the ones to keep
        self._targets.update(plan.shapes)
        if answer.bookmark:
            self.client.bookmark = answer.bookmark
        result.applied += len(txns)
        result.rows += plan.rows
        result.paused_events += plan.paused
        result.findings.extend(plan.findings)
        self.parked += plan.parked
        if queue_changed:
            self._read_queue()
        return consumed

    @staticmethod
    def _new_position(final: Transaction, pos: state.Position | None) -> state.Position:
        cursor = final.cursor
        return state.Position(
            commit_lsn=final.commit_lsn, end_lsn=final.end_lsn, xid=final.xid,
            kafka=dict(cursor) if cursor is not None else (pos.kafka if pos else None),
            commit_ts_ms=final.commit_ts,
            watermark_lsn=max(final.end_lsn, (pos.watermark_lsn or 0) if pos else 0))

    def _plan(self, txns: list[Transaction], failed: dict[int, tuple[str, bool]], *, coalesce: bool = True,
              refused: Mapping[tuple[int, int], str] | None = None) -> _Plan:
        """The statements of one D1 batch: the guard, the changes (or their parking), the position."""
        plan = _Plan(tables=dict(self._tables), blocked=set(self._blocked))
        conn = self.conn
        conn.execute("BEGIN")  # buffers: _send posts plan.stmts itself
        try:
            conn.execute(*position_guard(self._pos.commit_lsn if self._pos else None))
            conn.pending.append(DEFER_FOREIGN_KEYS)  # checked at the end of the batch, as PostgreSQL did at commit
            for txn in txns:
                covered = schema_apply.described_by_changes(txn)
                for rel in txn.relations:
                    if (rel.schema, rel.name) not in covered:  # a schema change describes it at its position
                        self._relation(rel, txn, plan)
                for ev, change in schema_apply.interleave(txn):
                    if change is not None:
                        self._schema_change(plan, change, txn, refused or {})
                        continue
                    assert ev is not None
                    self._owned(plan, None)
                    ts = plan.tables.get(f"{ev.source.schema}.{ev.source.table}")
                    if ts is not None and ts.paused:
                        plan.paused += 1
                        continue
                    self._route(ev, plan, failed)
                    self._owned(plan, ev)
            state.write_position(self._state, self._new_position(txns[-1], self._pos))
            plan.stmts = list(conn.pending)
        finally:
            conn.execute("ROLLBACK")
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
        self._owned(plan, None, upto=len(plan.stmts))
        if coalesce:
            self._coalesce(plan)
        return plan

    def _coalesce(self, plan: _Plan) -> None:
        """Merge runs of the same single-row INSERT (the planner's upserts of one table and column set)
        into multi-row INSERTs of at most ``limits.params`` values, and runs of the same delete by a
        one-column key into one ``IN (...)`` delete: D1's cost is per statement. SQLite applies the rows
        of one INSERT in order, each with its ON CONFLICT action, as separate statements would; deletes
        of distinct or repeated keys commute."""
        stmts: list[Stmt] = []
        owners: list[ChangeEvent | None] = []
        musts: dict[int, str] = {}
        merged: set[int] = set()
        ddl: dict[int, tuple[int, int]] = {}
        i, n = 0, len(plan.stmts)
        while i < n:
            sql, params = plan.stmts[i]
            one = _single_row(sql, len(params))
            j = i + 1
            match = None if one is not None else _single_key_delete(sql, len(params))
            if match is not None and plan.owners[i] is not None:
                while j < n and j - i < self.limits.params and plan.stmts[j][0] == sql and plan.owners[j] is not None:
                    j += 1
                if j - i > 1:  # DELETE ... WHERE "k" = ? (x m) -> DELETE ... WHERE "k" IN (?, ..., ?)
                    merged.add(len(stmts))
                    stmts.append((sql[:-len(match)] + " IN (" + ", ".join("?" * (j - i)) + ")",
                                  [p[0] for _, p in plan.stmts[i:j]]))
                    owners.append(plan.owners[i])
                    i = j
                    continue
            if one is not None and plan.owners[i] is not None:
                per = max(1, self.limits.params // max(1, len(params)))
                while (j < n and j - i < per and plan.stmts[j][0] == sql and plan.owners[j] is not None
                       and j not in plan.musts):
                    j += 1
            if i in plan.musts:
                musts[len(stmts)] = plan.musts[i]
            if i in plan.ddl:  # never merged (no owner): its refusal still names the schema change
                ddl[len(stmts)] = plan.ddl[i]
            if one is not None and j - i > 1:
                merged.add(len(stmts))
                values = [v for _, p in plan.stmts[i:j] for v in p]
                stmts.append((sql.replace(one, ") VALUES " + ", ".join([one[len(") VALUES "):]] * (j - i)), 1),
                              values))
            else:
                stmts.append((sql, params))
            owners.append(plan.owners[i])
            i = j
        plan.stmts, plan.owners, plan.musts, plan.merged, plan.ddl = stmts, owners, musts, merged, ddl

    def _owned(self, plan: _Plan, owner: ChangeEvent | None, *, upto: int | None = None) -> None:
        n = len(self.conn.pending) if upto is None else upto
        plan.owners.extend([owner] * (n - len(plan.owners)))

    def _route(self, ev: ChangeEvent, plan: _Plan, failed: dict[int, tuple[str, bool]]) -> None:
        """Apply a change, or park it: its key is blocked, D1 refused it, or it breaks a D1 limit."""
        if ev.op is Op.TRUNCATE:
            table = f"{ev.source.schema}.{ev.source.table}"
            if plan.blocked:  # queued changes of a truncated table no longer matter
                self.conn.execute(f"DELETE FROM {_Q} WHERE source_table = ?", [table])
                plan.blocked = {k for k in plan.blocked if not k.startswith(table + ":")}
            self._event(ev, plan)
            plan.rows += 1
            return
        bad = failed.get(id(ev))
        if not plan.blocked and bad is None:  # the common case: nothing queued, nothing failed
            try:
                self._event(ev, plan)
            except (ApplyError, D1LimitError) as exc:
                self._refused(ev, event_keys(ev), plan, failed, exc)
                return
            plan.rows += 1
            return
        keys = event_keys(ev)
        if not plan.blocked.isdisjoint(keys):
            self._park(ev, keys, plan, status=QueueStatus.WAITING, error=None, dead=False)
            return
        if bad is not None:
            self._park(ev, keys, plan, status=QueueStatus.RETRY, error=bad[0], dead=bad[1])
            return
        try:
            self._event(ev, plan)
        except (ApplyError, D1LimitError) as exc:
            self._refused(ev, keys, plan, failed, exc)
            return
        plan.rows += 1

    def _refused(self, ev: ChangeEvent, keys: set[str], plan: _Plan, failed: dict[int, tuple[str, bool]],
                 exc: Exception) -> None:
        """Refused while planning (a D1 limit, a missing key): park it; nothing of it is sent."""
        del self.conn.pending[plan.mark:]
        dead = isinstance(exc, D1LimitError)
        failed[id(ev)] = (str(exc), dead)
        self._park(ev, keys, plan, status=QueueStatus.RETRY, error=str(exc), dead=dead)

    def _event(self, ev: ChangeEvent, plan: _Plan) -> None:
        mapping = self.mappings.get((ev.source.schema, ev.source.table))
        if mapping is None:
            raise ApplyError(f"no replica table is mapped for source table {ev.source.schema}.{ev.source.table}")
        tgt = plan.shapes.get(mapping.target) or self._target(mapping.target)
        pending = self.conn.pending
        plan.mark = len(pending)
        for st in self.planner.plan(ev, mapping, tgt):
            if st.sql not in self._checked_sql or not fits_cheaply(st.params, self.limits):
                check_statement(st.sql, st.params, limits=self.limits,
                                what=f"{ev.op.name.lower()} on {tgt.table} key {dict(ev.key)!r}")
                self._checked_sql.add(st.sql)
            pending.append((st.sql, st.params))
            if st.must_change:
                pending.append(changed_guard())
                plan.musts[len(pending) - 1] = st.must_change

    def _park(self, ev: ChangeEvent, keys: set[str], plan: _Plan, *, status: QueueStatus, error: str | None,
              dead: bool) -> None:
        """Queue the change in D1 with this batch (the row format of sinks.retry's queue)."""
        now = time.time()
        attempts = 0 if status is QueueStatus.WAITING else (self.policy.max_attempts if dead else 1)
        if status is QueueStatus.RETRY and attempts >= self.policy.max_attempts:
            status = QueueStatus.DEAD
        nxt = now + self.policy.delay(attempts) if status is QueueStatus.RETRY else None
        self.conn.execute(
            f"INSERT INTO {_Q} (status, source_table, keys, commit_lsn, event, error, attempts, next_attempt_at, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [status.value, f"{ev.source.schema}.{ev.source.table}", json.dumps(sorted(keys)), ev.source.commit_lsn,
             ev.to_json(), error, attempts, nxt, now, now])
        plan.blocked |= keys
        plan.parked += 1
        if error:
            log.warning("target %s: parked change to %s (%s): %s", self.label, ", ".join(sorted(keys)),
                        status.value, error)

    def _target(self, table: str) -> TargetTable:
        tgt = self._targets.get(table)
        if tgt is None:
            info = self.conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
            tgt = self._targets[table] = target_from_table_info(table, info)
        return tgt

    def _relation(self, rel: Relation, txn: Transaction, plan: _Plan) -> None:
        """Schema drift (the shared rule, pipeline.drift.plan): a new source column is added in D1 (in this
        batch); a dropped or retyped one pauses."""
        name = f"{rel.schema}.{rel.name}"
        mapping = self.mappings.get((rel.schema, rel.name))
        if mapping is None:
            return
        ts = plan.tables.get(name) or state.TableState(table=name)
        if ts.paused:
            return
        tgt = plan.shapes.get(mapping.target) or self._target(mapping.target)
        drifted = drift.plan(rel, ts, mapping, tgt.columns, commit_lsn=txn.commit_lsn)
        drifted.log()
        plan.findings.extend(drifted.findings)
        for sql, params in drifted.statements:
            self.conn.execute(sql, list(params))
            plan.altered.append((sql, list(params)))
            if self._recorder is not None:  # the rest of the batch is planned on the shadow's shapes
                self._recorder.shadow.execute(sql, params)
        if drifted.added:  # the batch adds them; plan the rest of it with them
            check_columns(name, len(tgt.columns) + len(drifted.added), limits=self.limits)
            plan.shapes[mapping.target] = replace(tgt, columns=(*tgt.columns, *drifted.added))
        if drifted.state != plan.tables.get(name):
            state.write_table(self._state, drifted.state)
            plan.tables[name] = drifted.state

    def _schema_change(self, plan: _Plan, change: SchemaChange, txn: Transaction,
                       refused: Mapping[tuple[int, int], str]) -> None:
        """Follow one source DDL statement at its position: the statements of schema_apply.follow (run on
        an in-memory shadow of D1's schema, recorded) go into this batch, with the rows and the position.
        Re-copy into D1 is not possible: such a change pauses its table by name."""
        if self._recorder is None:
            self._recorder = SchemaRecorder(lambda sql, args: self.client.query(sql, list(args)).rows)
            for sql, args in plan.altered:  # what this batch already changed before its first schema change
                self._recorder.shadow.execute(sql, tuple(args))
        follower = RecordingFollower(self._recorder, self.mappings, self.options, forget=plan.shapes.clear)
        key = (txn.commit_lsn, change.lsn)
        if key in refused:
            found = schema_apply.refuse(follower, change, refused[key], commit_lsn=txn.commit_lsn, tables=plan.tables)
        else:
            found = schema_apply.follow(follower, change, commit_lsn=txn.commit_lsn, tables=plan.tables,
                                        can_recopy=False)
        self._owned(plan, None)
        pending = self.conn.pending
        for stmt in self._recorder.take():
            pending.append(stmt)
            plan.ddl[len(pending) - 1] = key
        self._owned(plan, None)
        plan.shapes.clear()  # every table's shape as the batch leaves it, from the shadow
        for mapping in self.mappings.values():
            info = self._recorder.table_info(mapping.target)
            if info:
                plan.shapes[mapping.target] = target_from_table_info(mapping.target, info)
                check_columns(mapping.target, len(info), limits=self.limits)
        for f in found:
            log.log(logging.ERROR if f.level >= Level.ERROR else logging.INFO, "schema change: %s", f)
        plan.findings.extend(found)

    def _too_large(self, txns: list[Transaction], size: int) -> TransactionTooLarge:
        counts: dict[str, int] = {}
        for txn in txns:
            for ev in txn.events:
                name = f"{ev.source.schema}.{ev.source.table}"
                counts[name] = counts.get(name, 0) + 1
        table, rows = max(counts.items(), key=lambda kv: kv[1]) if counts else ("?", 0)
        return TransactionTooLarge(
            f"target {self.label}: source transaction xid {txns[0].xid} needs a {size}-byte D1 batch "
            f"({sum(counts.values())} row changes, most in table {table}: {rows}), over the "
            f"{self.limits.transaction_bytes}-byte limit of one D1 batch; in parts it would be visible half-done "
            "in D1, so the stream stops here (split the transaction on the source)")

    # -- validator repairs -------------------------------------------------------------------
    def apply_repairs(self, events: Sequence[ChangeEvent], *, per_batch: int = 500) -> int:
        """Apply validator repairs (snapshot reads and deletes), position untouched, in D1 batches of
        ``per_batch`` changes, each guarded by the position read when this sink opened: the caller read
        the source after that, so its rows are at least as new as D1's; if the daemon applied more
        meanwhile the batch is refused (StateError) rather than writing older values over newer ones."""
        for start in range(0, len(events), per_batch):
            plan = _Plan()
            self.conn.execute("BEGIN")  # buffers: sent below as one D1 batch
            try:
                self.conn.execute(*position_guard(self._pos.commit_lsn if self._pos else None))
                self.conn.pending.append(DEFER_FOREIGN_KEYS)
                for ev in events[start:start + per_batch]:
                    self._event(ev, plan)
                stmts = list(self.conn.pending)
            finally:
                self.conn.execute("ROLLBACK")
            try:
                self.client.batch(stmts, locate=True)
            except D1Refused as exc:
                if exc.index == 0 and is_guard_failure(str(exc)):
                    raise StateError(f"target {self.label} applied more changes while repairing; "
                                     f"{start} of {len(events)} repaired, run `pg2edge validate --repair` again"
                                     ) from None
                raise ApplyError(f"target {self.label}: a repair was refused: {exc}") from exc
        return len(events)

    # -- watermark and the retry queue ---------------------------------------------------------
    def _watermark(self, lsn: int) -> None:
        pos = self._pos
        if pos is None or pos.commit_lsn <= 0 or lsn <= (pos.watermark_lsn or 0):
            return
        new = replace(pos, watermark_lsn=lsn)
        try:
            with self.conn:
                self.conn.execute(*position_guard(pos.commit_lsn))
                state.write_position(self._state, new)
        except D1Refused:
            self._pos = state.read_position(self._state)
            return
        self._pos = new

    def _read_queue(self) -> None:
        """The blocked keys and the next due retry, from D1."""
        queued = list_queue(self._state)
        self._blocked = {k for c in queued for k in c.keys}
        self._depths = {}
        for c in queued:
            self._depths[c.status.value] = self._depths.get(c.status.value, 0) + 1
        due = [c.next_attempt_at or 0.0 for c in queued if c.status is QueueStatus.RETRY]
        if any(c.status is QueueStatus.WAITING for c in queued):
            due.append(0.0)
        self._next_due = min(due) if due else None

    def queue_depths(self) -> dict[str, int]:
        """Queued changes by status, as of the last batch that parked or drained (no request per call)."""
        return dict(self._depths)

    def drain(self, *, force_ids: Sequence[int] = ()) -> tuple[int, int]:
        """Retry the due (or ``force_ids``) queued changes in id order, key by key; each goes in its own
        D1 batch together with its removal from the queue. Returns (applied, still queued)."""
        now = time.time()
        forced = set(force_ids)
        blocked: set[str] = set()
        applied = 0
        entries = list_queue(self._state)
        for e in entries:
            keys = set(e.keys)
            due = e.id in forced or (e.status is QueueStatus.RETRY and (e.next_attempt_at or 0) <= now) or (
                e.status is QueueStatus.WAITING)
            if not blocked.isdisjoint(keys) or not due:
                blocked |= keys
                continue
            ev = ChangeEvent.from_dict(e.event)
            plan = _Plan()
            error: str
            try:
                self.conn.execute("BEGIN")
                try:
                    self._event(ev, plan)
                    self.conn.execute(f"DELETE FROM {_Q} WHERE id = ?", [e.id])
                    self.conn.execute(*changed_guard())  # sent twice (a lost answer), it fails instead
                    stmts = list(self.conn.pending)
                finally:
                    self.conn.execute("ROLLBACK")
                self.client.batch(stmts)
                applied += 1
                continue
            except (ApplyError, D1LimitError, D1Refused) as exc:
                error = plan.musts.get(exc.index, str(exc)) if isinstance(exc, D1Refused) and exc.index else str(exc)
            attempts = e.attempts + 1
            dead = e.id in forced or attempts >= self.policy.max_attempts
            self.client.batch([(f"UPDATE {_Q} SET status = ?, error = ?, attempts = ?, next_attempt_at = ?, "
                                "updated_at = ? WHERE id = ?",
                                [QueueStatus.DEAD.value if dead else QueueStatus.RETRY.value, error, attempts,
                                 None if dead else now + self.policy.delay(attempts), now, e.id])])
            log.warning("target %s: queued change %d (%s) failed again (attempt %d%s): %s", self.label, e.id,
                        ", ".join(e.keys), attempts, ", now in the DLQ" if dead else "", error)
            blocked |= keys
        self._read_queue()
        return applied, len(list_queue(self._state))


def _single_row(sql: str, params: int) -> str | None:
    """``") VALUES (?, ..., ?)"`` when ``sql`` is a one-row INSERT with exactly that values list once."""
    if not sql.startswith("INSERT INTO ") or params == 0:
        return None
    part = ") VALUES (" + ", ".join("?" * params) + ")"
    return part if sql.count(part) == 1 else None


def _single_key_delete(sql: str, params: int) -> str | None:
    """The match (``" = ?"``) of the planner's delete by a one-column primary key, ``DELETE FROM "t" WHERE
    "k" = ?``; None for any other statement."""
    if params != 1 or not sql.startswith("DELETE FROM ") or sql.count("?") != 1 or " AND " in sql \
            or "rowid" in sql:
        return None
    return next((tail for tail in (" = ?", " IS ?") if sql.endswith(tail)), None)
