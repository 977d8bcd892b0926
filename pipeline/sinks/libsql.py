"""The libSQL sink: whole source transactions into sqld, Turso or tursodb over Hrana, exactly once.

Each call of :meth:`LibsqlSink.apply` sends ONE atomic Hrana batch
(``BEGIN IMMEDIATE; guard; rows...; position; COMMIT``, each step run only if
the one before succeeded, ``ROLLBACK`` otherwise):

* the **guard** fails the batch unless the position stored in the remote
  ``_pg2edge_state`` is still the one the batch was planned on. A request
  whose answer was lost and is sent again (the session retries transient
  failures in place) therefore never applies twice: the guard refuses it, the
  sink reads the stored position and sees the batch is already there;
* the **rows** are the statements of the shared planner
  (:mod:`pg2edge.pipeline.sinks.statements`), the same SQL the SQLite file
  sink runs; a statement that must change a row is followed by a check that
  fails the batch when it changed none;
* the **position** (commit LSN, end LSN, xid, commit time, watermark) is
  written last, so the remote says exactly what it holds after a crash at any
  instant.

A change the remote refuses permanently (a constraint, a type) is parked in the
remote's ``_pg2edge_queue`` (same table and rules as the file sink's retry
queue: its key is blocked, later changes to the key wait behind it) and the
batch is re-sent without it, so one bad row never stops the stream and
``pg2edge dlq`` reads and replays it over HTTP. A batch bigger than the
request limit is split at transaction boundaries, each part with its own
position; one transaction too big for a single request is refused by name
(nothing of it is applied). Kafka snapshot items are refused by name: a remote
target is fed from PostgreSQL (``pg2edge sync``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import drift, schema_apply, schema_model, state
from pg2edge.pipeline.errors import ApplyError, StateError
from pg2edge.pipeline.events import ChangeEvent, Control, Op, SchemaChange, Transaction, Watermark
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.remote.connection import RemoteConnection, require_replica
from pg2edge.pipeline.remote.errors import RemoteSQLError, RemoteTooLarge
from pg2edge.pipeline.remote.hrana import HranaClient, Stmt
from pg2edge.pipeline.remote.upload import FOREIGN_KEYS_OFF, REMOTE_STATE_DDL, state_upsert, upload_replica
from pg2edge.pipeline.remote.url import RemoteTarget, parse_target
from pg2edge.pipeline.schema_sql import RecordingFollower, SchemaRecorder
from pg2edge.pipeline.sinks.base import ApplyResult
from pg2edge.pipeline.sinks.retry import DDL as QUEUE_DDL
from pg2edge.pipeline.sinks.retry import QUEUE_TABLE, QueueError, QueueStatus, RetryPolicy, event_keys
from pg2edge.pipeline.sinks.statements import Planner, TableMapping, TargetTable, target_from_table_info
from pg2edge.pipeline.sources.cdc import RETAINED_WAL_WARN_BYTES
from pg2edge.pipeline.sources.pgoutput import Relation
from pg2edge.pipeline.sources.snapshot import SnapshotReport, run_snapshot
from pg2edge.translators.findings import Level
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

_T = quote_ident(state.STATE_TABLE)
_Q = quote_ident(QUEUE_TABLE)
_POSITION = f"SELECT value FROM {_T} WHERE scope = 'position' AND name = 'applied'"
# value is NOT NULL: inserting NULL fails the batch at this step when the condition holds
_FAIL_IF = f"INSERT INTO {_T} (scope, name, value, updated_at) SELECT 'guard', ?, NULL, '' WHERE "
_TRANSIENT_WORDS = ("database is locked", "busy", "locked")
PART_BYTES = 1 << 20
_MAX_VARIABLES = 32_000  # SQLite's default limit is 32766 bound parameters per statement
_MERGED = -1  # owner of a multi-row statement: several changes; a failure re-plans unmerged


@dataclass(slots=True)
class _Planned:
    stmts: list[Stmt]
    owners: list[int | None]  # per statement: index of the event it belongs to (None: the sink's own)
    must: dict[int, str]  # statement index -> message when that "changed a row" check fails
    events: list[ChangeEvent]
    rows: int = 0
    paused_events: int = 0
    parked_keys: set[str] = field(default_factory=set)
    parked_counts: dict[str, int] = field(default_factory=dict)
    reload: bool = False  # a TRUNCATE dropped queued changes: re-read the queue after the batch
    merge: bool = True  # fold consecutive same-shape upserts into multi-row statements
    last_sql: str | None = None  # the single-row SQL the last statement was planned from (mergeable)
    merged: dict[int, list[Any]] = field(default_factory=dict)  # statement index -> [head, marks, tail, rows]
    findings: list[Any] = field(default_factory=list)  # schema drift found while planning (kept on success)
    ddl: dict[int, tuple[int, int]] = field(default_factory=dict)  # statement index -> the schema change it follows
    altered: list[Stmt] = field(default_factory=list)  # drift's ADD COLUMNs so far (a later shadow replays them)


class LibsqlSink:
    """Applies batches of source transactions to a remote libSQL database (see the module docstring)."""

    def __init__(self, client: HranaClient, mappings: Mapping[tuple[str, str], TableMapping], *,
                 label: str | None = None, policy: RetryPolicy | None = None,
                 options: TranslateConfig | None = None) -> None:
        self.client = client
        self.options = options or TranslateConfig()  # the type rules schema changes are translated with
        self._recorder: SchemaRecorder | None = None  # while a batch with a schema change is planned
        self.label = label or client.label
        self.mappings = dict(mappings)
        self.policy = policy or RetryPolicy()
        self.planner = Planner()
        self._shapes: dict[str, tuple[str, str, str]] = {}
        self.parked = 0
        self._targets: dict[str, TargetTable] = {}
        # like the file sink (SQLite's default): rows arrive in source commit order, and PostgreSQL already
        # checked the constraints (deferred ones only at its commit); sqld would check each statement
        if FOREIGN_KEYS_OFF not in client.batch_prelude:
            client.batch_prelude.append(FOREIGN_KEYS_OFF)
        # one request: the state tables exist, and the cached state is read (a tenant database opens often)
        self._reload(client.batch([(REMOTE_STATE_DDL, ()), (QUEUE_DDL, ()), *self._RELOAD])[2:])

    # -- cached remote state (one writer: this sink) ---------------------------------------
    _RELOAD: tuple[Stmt, ...] = ((_POSITION, ()), (f"SELECT name, value FROM {_T} WHERE scope = ?", ("table",)),
                                 (f"SELECT keys, status FROM {_Q}", ()))

    def _reload(self, read: Sequence[Any] | None = None) -> None:
        """Re-read the position, the tables' states and the retry queue (``read``: their results, fetched)."""
        position, tables, queue = read if read is not None else self.client.batch(self._RELOAD, atomic=False)
        self._position = state.Position(**json.loads(position.rows[0][0])) if position.rows else None
        self._tables = {name: state.TableState(**{**v, "snapshot": state.SnapshotStatus(v.get("snapshot", "pending"))})
                        for name, v in ((n, json.loads(value)) for n, value in tables.rows)}
        self._blocked: set[str] = set()
        self._counts: dict[str, int] = {}
        for keys, status in queue.rows:
            self._blocked.update(json.loads(keys))
            self._counts[status] = self._counts.get(status, 0) + 1
        self._targets.clear()

    def _read_position(self) -> state.Position | None:
        rows = self.client.execute(_POSITION).rows
        return state.Position(**json.loads(rows[0][0])) if rows else None

    def _target(self, table: str) -> TargetTable:
        tgt = self._targets.get(table)
        if tgt is None:
            info = (self._recorder.table_info(table) if self._recorder is not None  # the shape the batch leaves
                    else self.client.execute(f"PRAGMA table_info({quote_ident(table)})").rows)
            tgt = self._targets[table] = target_from_table_info(table, info)
        return tgt

    # -- the sink protocol -----------------------------------------------------------------
    def position(self) -> state.Position | None:
        return self._position

    def durable(self, *, wait: bool = False) -> state.Position | None:
        """Durable as soon as applied (the server's batch is durable when it answers)."""
        return self.position()

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        """Apply whole transactions and their position atomically; split only between transactions."""
        result = ApplyResult(position=self._position)
        last = self._position.commit_lsn if self._position else -1
        todo: list[Transaction] = []
        for txn in batch:
            if txn.commit_lsn <= last:
                result.skipped += 1
                continue
            todo.append(txn)
            last = txn.commit_lsn
        # parts of at most ~1 MiB: big enough that per-request costs vanish, small enough that one
        # request stays a few seconds even on a slow server (a timed-out request is sent again whole)
        budget = int(min(self.client.max_request_bytes * 0.8, PART_BYTES))
        start = 0
        while start < len(todo):
            end, size = start, 0
            while end < len(todo):
                txn_size = _txn_size(todo[end])
                if end > start and size + txn_size > budget:
                    break
                size += txn_size
                end += 1
            self._apply_part(todo[start:end], result)
            start = end
        return result

    def _apply_part(self, txns: Sequence[Transaction], result: ApplyResult) -> None:
        parked: dict[int, str] = {}  # event index -> error: parked in the retry queue on the next attempt
        refused: dict[tuple[int, int], str] = {}  # schema change (commit LSN, LSN) -> the target's refusal
        merge = True
        delay = self.policy.transient_delay
        ddl = any(t.schema_changes for t in txns)
        while True:
            expected = self._position
            tables = dict(self._tables)
            targets = dict(self._targets)
            saved = dict(self.mappings)  # a schema change rekeys and reshapes them
            try:
                planned, position = self._plan(txns, expected, tables, parked, result, merge=merge, refused=refused)
            except BaseException:
                self._targets = targets
                if ddl:
                    self._restore_mappings(saved)
                raise
            try:
                self.client.batch(planned.stmts)
            except RemoteTooLarge as exc:
                self._targets = targets
                if ddl:
                    self._restore_mappings(saved)
                raise RemoteTooLarge(f"target {self.label}: transaction(s) xid {txns[0].xid}..{txns[-1].xid} "
                                     f"({len(planned.events)} changes) do not fit one request: {exc}") from None
            except RemoteSQLError as exc:
                self._targets = targets
                planned_mappings = self.mappings
                if ddl:
                    self._restore_mappings(saved)
                step = exc.step
                if step is not None and step in planned.ddl:  # the target refused a schema change's statement
                    log.warning("target %s refused a schema change (%s); pausing its tables", self.label, exc)
                    refused[planned.ddl[step]] = str(exc)
                    continue
                if step == 0:  # the guard: the stored position moved since we read it
                    if self._resolve_conflict(txns, result):
                        self.mappings = planned_mappings  # the batch is there: its schema changes too
                        if ddl:
                            schema_model.use_baselines(self.conn, self.mappings)
                        return
                    continue
                if any(w in str(exc).lower() for w in _TRANSIENT_WORDS):
                    log.warning("target %s is busy (%s); retrying the batch in %.2f s", self.label, exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, self.policy.transient_max_delay)
                    continue
                owner = planned.owners[step] if step is not None and 0 <= step < len(planned.owners) else None
                if owner is None:
                    raise
                if owner == _MERGED:  # one of several merged changes failed: find which, unmerged
                    log.info("a multi-row statement failed (%s); re-planning the batch row by row", exc)
                    merge = False
                    continue
                message = planned.must.get(step, None) if step is not None else None
                ev = planned.events[owner]
                text = message or (f"{ev.op.name.lower()} on {ev.source.schema}.{ev.source.table} key "
                                   f"{dict(ev.key)!r} failed: {exc}")
                log.warning("%s; re-sending the batch with the failing change parked", text)
                parked[owner] = text
                continue
            self._position = position
            self._tables = tables
            result.applied += len(txns)
            result.rows += planned.rows
            result.paused_events += planned.paused_events
            result.findings.extend(planned.findings)
            result.position = position
            self._blocked |= planned.parked_keys
            for status, n in planned.parked_counts.items():
                self._counts[status] = self._counts.get(status, 0) + n
            self.parked += sum(planned.parked_counts.values())
            if planned.reload:
                self._reload()
            return

    def _restore_mappings(self, saved: dict[tuple[str, str], TableMapping]) -> None:
        """Back to the names and shapes the target's (unchanged) baselines record."""
        self.mappings = saved
        schema_model.use_baselines(self.conn, self.mappings)

    def _resolve_conflict(self, txns: Sequence[Transaction], result: ApplyResult) -> bool:
        """The guard failed: True when the batch is in fact applied (an answer was lost), else reload and retry."""
        stored = self._read_position()
        if stored is not None and stored.commit_lsn >= txns[-1].commit_lsn:
            log.info("target %s already holds commit %s (a lost answer was retried); not applied twice",
                     self.label, stored.commit_lsn)
            self._reload()
            result.applied += len(txns)
            result.position = stored
            return True
        if stored == self._position:
            raise StateError(f"target {self.label}: the position guard failed but the position did not move")
        log.warning("target %s: the stored position moved under this sink (another writer?); re-reading it",
                    self.label)
        self._reload()
        if stored is not None and self._position is not None and any(t.commit_lsn <= stored.commit_lsn for t in txns):
            raise StateError(f"target {self.label} was written by another process up to commit "
                             f"{stored.commit_lsn}: stop the other `pg2edge sync`")
        return False

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, txns: Sequence[Transaction], expected: state.Position | None,
              tables: dict[str, state.TableState], parked: Mapping[int, str],
              result: ApplyResult, *, merge: bool = True,
              refused: Mapping[tuple[int, int], str] | None = None) -> tuple[_Planned, state.Position]:
        try:
            return self._plan_batch(txns, expected, tables, parked, result, merge=merge, refused=refused or {})
        finally:
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None

    def _plan_batch(self, txns: Sequence[Transaction], expected: state.Position | None,
                    tables: dict[str, state.TableState], parked: Mapping[int, str], result: ApplyResult, *,
                    merge: bool, refused: Mapping[tuple[int, int], str]) -> tuple[_Planned, state.Position]:
        p = _Planned(stmts=[], owners=[], must={}, events=[], merge=merge)
        self._add(p, _guard(expected), None)
        blocked = set(self._blocked)
        now = time.time()
        for txn in txns:
            covered = schema_apply.described_by_changes(txn)
            for rel in txn.relations:
                if (rel.schema, rel.name) not in covered:  # a schema change describes it at its position
                    self._relation(rel, txn, tables, p, result)
            for ev, change in schema_apply.interleave(txn):
                if change is not None:
                    self._schema_change(p, change, txn, tables, refused)
                    continue
                assert ev is not None
                index = len(p.events)
                p.events.append(ev)
                name = f"{ev.source.schema}.{ev.source.table}"
                ts = tables.get(name)
                if ts is not None and ts.paused:
                    p.paused_events += 1
                    continue
                if ev.op is Op.TRUNCATE and blocked:
                    self._add(p, (f"DELETE FROM {_Q} WHERE source_table = ?", (name,)), None)
                    p.reload = True
                    blocked = {k for k in blocked if not k.startswith(name + ":")}
                keys = event_keys(ev) if ev.op is not Op.TRUNCATE and (blocked or index in parked) else set()
                if index in parked:
                    self._park(p, ev, keys, QueueStatus.RETRY, parked[index], 1, now)
                    blocked |= keys
                elif keys and not blocked.isdisjoint(keys):
                    self._park(p, ev, keys, QueueStatus.WAITING, None, 0, now)
                else:
                    self._event(p, ev, index)
                p.rows += 1
        final = txns[-1]
        prev_mark = (expected.watermark_lsn or 0) if expected else 0
        position = state.Position(commit_lsn=final.commit_lsn, end_lsn=final.end_lsn, xid=final.xid,
                                  kafka=dict(final.cursor) if final.cursor is not None else
                                  (expected.kafka if expected else None),
                                  commit_ts_ms=final.commit_ts, watermark_lsn=max(final.end_lsn, prev_mark))
        self._add(p, state_upsert("position", "applied", asdict(position)), None)
        for i, (head, marks, tail, rows) in p.merged.items():  # the multi-row statements' SQL, built once
            p.stmts[i] = (f"{head} VALUES {', '.join([marks] * rows)}{tail}", p.stmts[i][1])
        return p, position

    def _add(self, p: _Planned, stmt: Stmt, owner: int | None) -> None:
        p.stmts.append(stmt)
        p.owners.append(owner)
        p.last_sql = None

    def _merge(self, p: _Planned, sql: str, params: Sequence[Any], index: int) -> bool:
        """Fold a planned single-row ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]`` into the statement
        before it when that is the same upsert: one multi-row statement, rows in source order (SQLite
        applies them one after the other, so a later row of the same key wins). Round trips and parsing
        on the server drop by the number of rows merged; a failure re-plans without merging to find
        the one change to park."""
        if p.last_sql != sql or not p.stmts:
            return False
        parts = self._shapes.get(sql)
        if parts is None:
            head, sep, rest = sql.partition(" VALUES (")
            marks, close, tail = rest.partition(")")
            if not sep or not close or not head.startswith("INSERT INTO ") or marks.replace("?, ", "") != "?":
                self._shapes[sql] = ("", "", "")
                return False
            parts = self._shapes[sql] = (head, "(" + marks + ")", tail)
        head, marks, tail = parts
        if not head:
            return False
        last = len(p.stmts) - 1
        prev_sql, prev_args = p.stmts[-1]
        if len(prev_args) + len(params) > _MAX_VARIABLES:
            return False
        shape = p.merged.get(last)
        if shape is None:  # the first merge: own the argument list, the SQL is built once in _finish
            shape = p.merged[last] = [head, marks, tail, 1]
            p.stmts[-1] = (prev_sql, list(prev_args))
            p.owners[-1] = _MERGED
        shape[3] += 1
        p.stmts[-1][1].extend(params)  # type: ignore[attr-defined]
        return True

    def _event(self, p: _Planned, ev: ChangeEvent, index: int) -> None:
        mapping = self.mappings.get((ev.source.schema, ev.source.table))
        if mapping is None:
            raise ApplyError(f"{self.label}: no replica table is mapped for source table "
                             f"{ev.source.schema}.{ev.source.table}")
        tgt = self._target(mapping.target)
        for st in self.planner.plan(ev, mapping, tgt):
            if p.merge and not st.must_change and self._merge(p, st.sql, st.params, index):
                continue
            self._add(p, (st.sql, st.params), index)
            p.last_sql = st.sql if p.merge and not st.must_change else None
            if st.must_change:
                self._add(p, (_FAIL_IF + "changes() = 0", ("changed",)), index)
                p.must[len(p.stmts) - 1] = st.must_change

    def _park(self, p: _Planned, ev: ChangeEvent, keys: set[str], status: QueueStatus, error: str | None,
              attempts: int, now: float) -> None:
        nxt = now + self.policy.delay(attempts) if status is QueueStatus.RETRY else None
        if status is QueueStatus.RETRY and attempts >= self.policy.max_attempts:
            status = QueueStatus.DEAD
        self._add(p, (f"INSERT INTO {_Q} (status, source_table, keys, commit_lsn, event, error, attempts, "
                      "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (status.value, f"{ev.source.schema}.{ev.source.table}", json.dumps(sorted(keys)),
                       ev.source.commit_lsn, ev.to_json(), error, attempts, nxt, now, now)), None)
        p.parked_keys |= keys
        p.parked_counts[status.value] = p.parked_counts.get(status.value, 0) + 1
        if error:
            log.warning("parked change to %s (%s): %s", ", ".join(sorted(keys)), status.value, error)

    def _relation(self, rel: Relation, txn: Transaction, tables: dict[str, state.TableState], p: _Planned,
                  result: ApplyResult) -> None:
        name = f"{rel.schema}.{rel.name}"
        mapping = self.mappings.get((rel.schema, rel.name))
        if mapping is None:
            return  # a partition published through its root: only rows of an unmapped table are an error
        ts = tables.get(name) or state.TableState(table=name)
        if ts.paused:
            return
        target = self._target(mapping.target)
        plan = drift.plan(rel, ts, mapping, target.columns, commit_lsn=txn.commit_lsn)
        plan.log()
        p.findings.extend(plan.findings)
        for stmt in plan.statements:
            self._add(p, stmt, None)
            p.altered.append(stmt)
            if self._recorder is not None:  # the rest of the batch is planned on the shadow's shapes
                self._recorder.shadow.execute(*stmt)
        if plan.added:
            self._targets[mapping.target] = replace(target, columns=(*target.columns, *plan.added))
        if plan.state != tables.get(name):
            self._add(p, state_upsert("table", name, asdict(plan.state)), None)
            tables[name] = plan.state

    def _schema_change(self, p: _Planned, change: SchemaChange, txn: Transaction,
                       tables: dict[str, state.TableState], refused: Mapping[tuple[int, int], str]) -> None:
        """Follow one source DDL statement at its position: the statements of schema_apply.follow (run on
        an in-memory shadow of the target's schema, recorded) go into this batch, with the rows and the
        position. Re-copy into a remote is not possible: such a change pauses its table by name."""
        if self._recorder is None:
            self._recorder = SchemaRecorder(lambda sql, args: self.client.execute(sql, args).rows)
            for sql, args in p.altered:  # what this batch already changed before its first schema change
                self._recorder.shadow.execute(sql, tuple(args))
        follower = RecordingFollower(self._recorder, self.mappings, self.options, forget=self._targets.clear)
        key = (txn.commit_lsn, change.lsn)
        if key in refused:
            found = schema_apply.refuse(follower, change, refused[key], commit_lsn=txn.commit_lsn, tables=tables)
        else:
            found = schema_apply.follow(follower, change, commit_lsn=txn.commit_lsn, tables=tables,
                                        can_recopy=False)
        for stmt in self._recorder.take():
            self._add(p, stmt, None)
            p.ddl[len(p.stmts) - 1] = key
        self._targets.clear()
        for f in found:
            log.log(logging.ERROR if f.level >= Level.ERROR else logging.INFO, "schema change: %s", f)
        p.findings.extend(found)

    def apply_repairs(self, events: Sequence[ChangeEvent]) -> int:
        """Apply validator repairs (snapshot reads and deletes) in one atomic batch, position untouched.

        Guarded by the position read when this sink opened: the caller reads the source after that,
        so its rows are at least as new as the replica; if the daemon applied more meanwhile the
        batch is refused (StateError) rather than writing older values over newer ones."""
        if not events:
            return 0
        p = _Planned(stmts=[], owners=[], must={}, events=list(events), merge=False)
        self._add(p, _guard(self._position), None)
        for i, ev in enumerate(events):
            self._event(p, ev, i)
        try:
            self.client.batch(p.stmts)
        except RemoteSQLError as exc:
            if exc.step == 0:
                raise StateError(f"target {self.label} applied more changes while repairing; nothing repaired, "
                                 "run `pg2edge validate --repair` again") from None
            raise
        return len(events)

    # -- control items, periodic work ---------------------------------------------------------
    def control(self, item: Control) -> None:
        if isinstance(item, Watermark):
            self.advance_watermark(item.lsn)
            return
        raise ConfigError(f"target {self.label}: a Kafka snapshot item ({type(item).__name__}) cannot be applied to "
                          "a remote libSQL target; sync it from PostgreSQL (`pg2edge sync --target URL`)")

    def advance_watermark(self, lsn: int) -> None:
        """A heartbeat passed: every source change below ``lsn`` is applied (one small atomic batch)."""
        pos = self._position
        if pos is None or pos.commit_lsn <= 0 or lsn <= (pos.watermark_lsn or 0):
            return
        new = replace(pos, watermark_lsn=lsn)
        try:
            self.client.batch([_guard(pos), state_upsert("position", "applied", asdict(new))])
        except RemoteSQLError as exc:
            if exc.step == 0:
                self._reload()
                return
            raise
        self._position = new

    @property
    def conn(self) -> Any:
        """A read connection on the same client (the DLQ readers take it like an apsw connection)."""

        return RemoteConnection(self.client.target, client=self.client)

    def queue_depths(self) -> dict[str, int]:
        return dict(self._counts)

    def maintain(self) -> None:
        if self._counts.get(QueueStatus.RETRY.value) or self._counts.get(QueueStatus.WAITING.value):
            self.drain()

    def drain(self, *, force_ids: Iterable[int] = (), now: float | None = None) -> tuple[int, int]:
        """Retry due queued changes in id order, key by key, one atomic batch each; (applied, still queued)."""
        now = time.time() if now is None else now
        forced = set(force_ids)
        rows = self.client.execute(f"SELECT id, status, keys, event, attempts, next_attempt_at FROM {_Q} "
                                   "ORDER BY id").rows
        blocked: set[str] = set()
        applied = 0
        for qid, status, keys_json, event, attempts, next_at in rows:
            keys = set(json.loads(keys_json))
            due = qid in forced or (status == "retry" and (next_at or 0) <= now) or status == "waiting"
            if not blocked.isdisjoint(keys) or not due:
                blocked |= keys
                continue
            ev = ChangeEvent.from_dict(json.loads(event))
            p = _Planned(stmts=[], owners=[], must={}, events=[ev], merge=False)
            self._event(p, ev, 0)
            self._add(p, (f"DELETE FROM {_Q} WHERE id = ?", (qid,)), None)
            try:
                self.client.batch(p.stmts)
            except RemoteSQLError as exc:
                self._targets.clear()
                step = exc.step
                if step is None or step >= len(p.owners) or p.owners[step] is None:
                    raise
                error = p.must.get(step) or str(exc)
                tries = int(attempts) + 1
                dead = qid in forced or tries >= self.policy.max_attempts
                self.client.execute(
                    f"UPDATE {_Q} SET status = ?, error = ?, attempts = ?, next_attempt_at = ?, updated_at = ? "
                    "WHERE id = ?", ("dead" if dead else "retry", error, tries,
                                     None if dead else now + self.policy.delay(tries), now, qid))
                log.warning("queued change %d failed again (attempt %d%s): %s", qid, tries,
                            ", now in the DLQ" if dead else "", error)
                blocked |= keys
                continue
            applied += 1
        self._reload()
        return applied, sum(self._counts.values())

    def close(self) -> None:
        self.client.close()


def _guard(expected: state.Position | None) -> Stmt:
    """Fails (NOT NULL) unless the stored position's commit LSN is the expected one (or absent)."""
    if expected is None:
        return _FAIL_IF + f"EXISTS ({_POSITION})", ("position",)
    return (_FAIL_IF + f"(SELECT json_extract(value, '$.commit_lsn') FROM {_T} WHERE scope = 'position' AND "
            "name = 'applied') IS NOT ?", ("position", expected.commit_lsn))


def _txn_size(txn: Transaction) -> int:
    """A rough size in bytes of a transaction's statements on the wire (for splitting batches)."""
    size = 200
    for ev in txn.events:
        row = ev.after if ev.after is not None else ev.before
        if row:
            size += 48 * len(row) + sum([len(v) for v in row.values() if v.__class__ is str])
    return size



def open_remote_sink(target: RemoteTarget | str, *, dsn: str, options: Any, policy: RetryPolicy | None = None) -> LibsqlSink:
    """A LibsqlSink on an existing remote replica (its publication's tables and codecs), e.g. for ``dlq replay``."""

    remote = target if isinstance(target, RemoteTarget) else parse_target(target)
    client = HranaClient(remote)
    try:
        db = RemoteConnection(remote, client=client)
        require_replica(db)
        names = state.read_stream(db)  # type: ignore[arg-type]
        if names is None:
            raise QueueError(f"target {remote.label} has no recorded publication; nothing was ever synced")
        return LibsqlSink(client, build_mappings(dsn, db, names.publication, options),  # type: ignore[arg-type]
                          label=remote.label, policy=policy)
    except BaseException:
        client.close()
        raise


# -- sync into a remote target: snapshot (staged locally, uploaded), then the engine --------------
def staging_path(target: RemoteTarget) -> Path:
    """Where a remote target's snapshot is staged: $PG2EDGE_STAGING_DIR or ~/.cache/pg2edge/staging."""

    base = os.environ.get("PG2EDGE_STAGING_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pg2edge", "staging")
    digest = hashlib.sha256(target.label.encode()).hexdigest()[:16]
    return Path(base) / f"{digest}.db"


def remote_snapshot_done(client: HranaClient) -> bool:
    """True when the remote holds a complete replica (a position, and no upload in progress)."""
    try:
        rows = client.execute(f"SELECT scope FROM {_T} WHERE scope IN ('position', 'upload')").rows
    except RemoteSQLError as exc:
        if "no such table" in str(exc):
            return False
        raise
    scopes = {r[0] for r in rows}
    return "position" in scopes and "upload" not in scopes


SNAPSHOT_PATHS = ("direct", "staged")
DEFAULT_SNAPSHOT_PATH = "direct"  # the faster in bench/libsql.py (BENCHMARKS.md); both are kept


def check_snapshot_path(path: str | None) -> str:
    """``direct`` or ``staged`` (None: the default); anything else is a ConfigError naming the value."""
    if path is None:
        return DEFAULT_SNAPSHOT_PATH
    if path not in SNAPSHOT_PATHS:
        raise ConfigError(f"snapshot path {path!r}: use one of {', '.join(SNAPSHOT_PATHS)}")
    return path


def snapshot_into_remote(*, dsn: str, target: RemoteTarget, client: HranaClient, say: Callable[[str], None],
                         staging: Path | None = None, on_upload: Callable[[str, int, int], None] | None = None,
                         path: str | None = None, on_progress: Any = None, **snapshot_options: Any) -> Any:
    """The snapshot of a remote target, by one of two paths (both resume after a crash):

    * ``direct``: ``run_snapshot`` straight into the remote (``pipeline.remote.direct``): rows read from
      the exported snapshot, encoded by the codec and sent over Hrana as they come, per-table progress
      recorded on the remote with each batch; ``on_progress(spec, rows)`` as for a file snapshot;
    * ``staged``: the file snapshot into a staging file, then :func:`upload_replica` (``on_upload(table,
      sent, total)``); the staging file is removed once the remote holds everything (its position last).
    """
    from pg2edge.pipeline.remote.direct import direct_in_progress

    chosen = check_snapshot_path(path)
    if remote_snapshot_done(client):
        return SnapshotReport(slot="", publication="", consistent_lsn=0, already_complete=True)
    if chosen == "direct":
        say(f"snapshot of {target.label}: direct (rows sent as they are read)")
        report = run_snapshot(dsn=dsn, target=target, client=client, say=say, on_progress=on_progress,
                              **snapshot_options)
        report.already_complete = False
        return report
    if direct_in_progress(client):
        raise ConfigError(f"target {target.label}: a direct snapshot is in progress; finish it with "
                          "`--snapshot-path direct` (or empty the database)")
    file = staging or staging_path(target)
    file.parent.mkdir(parents=True, exist_ok=True)
    say(f"snapshot of {target.label}: staged in {file}, then uploaded")
    report = run_snapshot(dsn=dsn, target=file, say=say, on_progress=on_progress, **snapshot_options)
    started = time.monotonic()
    up = upload_replica(file, client, on_progress=on_upload, say=say)
    say(f"uploaded {up.rows} rows in {len(up.tables)} tables to {target.label} "
        f"({time.monotonic() - started:.1f} s, {up.requests} requests)")
    for suffix in ("", "-wal", "-shm"):
        Path(str(file) + suffix).unlink(missing_ok=True)
    report.already_complete = False
    return report


def run_remote_sync(*, dsn: str, target: RemoteTarget, tables: Any = None, jobs: int = 2,
                    options: Any = None, until_caught_up: bool = False, heartbeat_interval: float = 1.0,
                    retained_wal_warn_bytes: int | None = None, allow_replica_identity_full: bool = False,
                    stop: Any = None, say: Callable[[str], None] = print, max_wait: float = 0.2,
                    on_batch: Any = None, metrics: Any = None, policy: RetryPolicy | None = None,
                    staging: Path | None = None, max_request_bytes: int | None = None,
                    snapshot_path: str | None = None, on_progress: Any = None) -> Any:
    """``pg2edge sync --target URL``: snapshot into the remote if needed, then stream into it with LibsqlSink
    (the steps every remote target shares: ``pipeline.daemon.sync_remote``)."""
    from pg2edge.pipeline.daemon import RemoteSyncTarget, sync_remote  # inside: daemon dispatches URLs here (cycle)

    options = options or TranslateConfig()
    client = HranaClient(target)
    if max_request_bytes:
        client.max_request_bytes = max_request_bytes
    db: Any = RemoteConnection(target, client=client)

    def snapshot() -> SnapshotReport:
        report: SnapshotReport = snapshot_into_remote(
            dsn=dsn, target=target, client=client, say=say, staging=staging, tables=tables, jobs=jobs,
            options=options, allow_replica_identity_full=allow_replica_identity_full, path=snapshot_path,
            on_progress=on_progress)
        if not report.already_complete:
            say(f"snapshot: {report.rows} rows in {len(report.tables)} tables; streaming from "
                f"{format_lsn(report.consistent_lsn)}")
        return report

    return sync_remote(RemoteSyncTarget(
        db=db, snapshot=snapshot,
        mappings=lambda publication: build_mappings(dsn, db, publication, options),
        sink=lambda mappings: LibsqlSink(client, mappings, label=target.label, policy=policy, options=options),
        no_replica=lambda: StateError(f"target {target.label} holds no complete pg2edge replica "
                                      "(no stream or position)"),
        close=client.close),
        dsn=dsn, until_caught_up=until_caught_up, heartbeat_interval=heartbeat_interval,
        retained_wal_warn_bytes=retained_wal_warn_bytes or RETAINED_WAL_WARN_BYTES, stop=stop, say=say,
        max_wait=max_wait, metrics=metrics, on_batch=on_batch)
