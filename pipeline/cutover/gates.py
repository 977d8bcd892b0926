"""The cutover checklist: every gate that must pass before the replica takes over.

``run_checklist(dsn, target, thresholds=...)`` measures each gate and never
stops at the first failure, so one run shows everything that blocks the
cutover. A gate that cannot be measured (source down, no replica state)
FAILs with the reason; only a missing backup is a WARN.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge import dsn as dsnlib
from pg2edge.config import CutoverConfig, TranslateConfig
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.cutover import CUTOVER_SCOPE
from pg2edge.pipeline.cutover.checklist import FAIL, PASS, WARN, Checklist, Gate
from pg2edge.pipeline.lsn import format_lsn, parse_lsn
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.status import open_readonly, replica_status
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.validators.run import table_sides
from pg2edge.validators.waiting import pending_changes

log = logging.getLogger(__name__)

INTEGER_TYPES = ("int2", "int4", "int8")


def _mb(n: int | None) -> str:
    return "unknown" if n is None else f"{n} bytes"


class _Run:
    """One checklist run: shared measurements (status, table sides) computed once."""

    def __init__(self, dsn: str, target: Path | str, limits: CutoverConfig, options: TranslateConfig) -> None:
        self.dsn, self.target, self.limits, self.options = dsn, target, limits, options
        self._status: Any = None
        self._sides: Any = None

    def status(self) -> Any:
        if self._status is None:

            self._status = replica_status(self.target, source=self.dsn)
        return self._status

    def sides(self) -> Any:
        if self._sides is None:

            self._sides = table_sides(self.dsn, self.target, tables=None, options=self.options)
        return self._sides

    def replica(self) -> Any:

        return open_readonly(self.target)  # apsw on a file, a RemoteConnection (Hrana) on a URL

    # -- gates -------------------------------------------------------------------------
    def source_reachable(self) -> Gate:
        with dsnlib.connect(self.dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        return Gate("source reachable", PASS, f"PostgreSQL {version}", "", dsnlib.describe(self.dsn))

    def slot(self) -> Gate:
        st = self.status()
        limit = self.limits.max_retained_wal_bytes
        if st.slot is None:
            return Gate("replication slot", FAIL, "no slot recorded", f"<= {limit} bytes retained",
                        f"replica {self.target} records no stream (never synced, or torn down)")
        if st.retained_wal_bytes is None:
            return Gate("replication slot", FAIL, "slot missing", f"<= {limit} bytes retained",
                        f"slot {st.slot} does not exist on the source")
        ok = st.retained_wal_bytes <= limit
        return Gate("replication slot", PASS if ok else FAIL, _mb(st.retained_wal_bytes), f"<= {limit} bytes",
                    f"slot {st.slot} retains {st.retained_wal_bytes} bytes of WAL")

    def lag(self) -> Gate:
        st = self.status()
        lim_b, lim_s = self.limits.max_lag_bytes, self.limits.max_lag_seconds
        threshold = f"<= {lim_b} bytes and <= {lim_s:g} s"
        if st.lag_bytes is None:
            return Gate("replica lag", FAIL, "unknown", threshold, "the replica has applied nothing yet")
        seconds = st.lag_seconds
        idle = False
        if st.lag_bytes > 0 and seconds is not None and seconds > lim_s:
            idle = self._nothing_pending(st)  # only heartbeats / DDL after the last commit: not behind
            seconds = 0.0 if idle else seconds
        measured = f"{st.lag_bytes} bytes, " + ("unknown s" if seconds is None else f"{seconds:.1f} s")
        ok = st.lag_bytes <= lim_b and (seconds is None or seconds <= lim_s)
        detail = f"replica at {st.visible_lsn}, source at {st.source_lsn}"
        if idle:
            detail += "; no published change pending in the slot"
        return Gate("replica lag", PASS if ok else FAIL, measured, threshold, detail)

    def _nothing_pending(self, st: Any) -> bool:

        conn = self.replica()
        try:
            stream, pos = state.read_stream(conn), state.read_position(conn)
        finally:
            conn.close()
        if stream is None or pos is None:
            return False
        return pending_changes(self.dsn, stream, upto=parse_lsn(st.source_lsn), after_commit=pos.commit_lsn) == 0

    def retry_queue(self) -> Gate:
        n = self.status().retry_queue
        return Gate("retry queue empty", PASS if n == 0 else FAIL, f"{n} change(s)", "0",
                    "" if n == 0 else "changes wait for a retry; let `pg2edge sync` retry them or see `pg2edge dlq`")

    def dlq(self) -> Gate:
        n = self.status().dlq
        return Gate("DLQ empty", PASS if n == 0 else FAIL, f"{n} change(s)", "0",
                    "" if n == 0 else "dead-lettered changes: replay or drop them with `pg2edge dlq`")

    def validation(self) -> Gate:
        conn = self.replica()
        try:
            last = state.read_record(conn, "validation", "last")
        finally:
            conn.close()
        max_age = self.limits.validation_max_age
        threshold = f"clean, < {max_age:g} s old, within {self.limits.max_lag_bytes} bytes of now"
        if not last:
            return Gate("last validation", FAIL, "never validated", threshold, "run `pg2edge validate` first")
        age = (datetime.now(UTC) - datetime.fromisoformat(last["at"])).total_seconds()
        now_lsn = parse_lsn(self.status().source_lsn or "0/0")
        behind = max(0, now_lsn - parse_lsn(last["lsn"]))
        measured = f"{'clean' if last['clean'] else 'NOT clean'}, {age:.0f} s old, {behind} bytes before now"
        problems = []
        if not last["clean"]:
            problems.append(f"{last.get('mismatches', '?')} mismatch(es) at {last['lsn']}")
        if age > max_age:
            problems.append(f"stale: validated at {last['at']}, more than {max_age:g} s ago")
        if behind > self.limits.max_lag_bytes:
            problems.append(f"validated at LSN {last['lsn']}, {behind} bytes before the source's "
                            f"{format_lsn(now_lsn)}")
        return Gate("last validation", FAIL if problems else PASS, measured, threshold,
                    "; ".join(problems) or f"{last['mode']} validation at {last['lsn']}")

    def schema_drift(self) -> Gate:
        conn = self.replica()
        problems, checked = [], 0
        try:
            for side in self.sides():
                name = sqlite_table_name(side.table.schema, side.table.name)
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(name)})")}
                checked += 1
                if not have:
                    problems.append(f"{side.table.qualified}: replica table {name} is missing")
                    continue
                missing = [c for c in side.codec.columns if c not in have]
                if missing:
                    problems.append(f"{side.table.qualified}: replica lacks column(s) {', '.join(missing)}")
            from pg2edge.pipeline import resync, state

            for name, ts in state.read_tables(conn).items():  # a schema change not followed, or being re-copied
                if ts.paused:
                    problems.append(f"{name}: paused ({ts.pause_reason})")
            problems += [f"{name}: waiting for a re-copy ({why.get('reason')})"
                         for name, why in resync.pending(conn).items()]
        finally:
            conn.close()
        return Gate("no schema drift", FAIL if problems else PASS, f"{checked} table(s) compared",
                    "every copied source column present", "; ".join(problems))

    def row_counts(self) -> Gate:
        conn = self.replica()
        diffs, total = [], 0
        try:
            with dsnlib.connect(self.dsn, autocommit=True) as pg:
                for side in self.sides():
                    q = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(side.table.schema, side.table.name))
                    src = int(pg.execute(q).fetchone()[0])  # type: ignore[index]
                    name = quote_ident(sqlite_table_name(side.table.schema, side.table.name))
                    counted = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
                    assert counted is not None  # count(*) always returns one row
                    rep = int(counted[0])
                    total += src
                    if src != rep:
                        diffs.append(f"{side.table.qualified}: source {src}, replica {rep}")
        finally:
            conn.close()
        return Gate("row counts equal", FAIL if diffs else PASS, f"{total} source rows" if not diffs else
                    f"{len(diffs)} table(s) differ", "equal per table", "; ".join(diffs))

    def sequences(self) -> Gate:
        conn = self.replica()
        behind, checked = [], []
        try:
            with dsnlib.connect(self.dsn, autocommit=True) as pg:
                for side in self.sides():
                    t = side.table
                    if len(t.primary_key) != 1:
                        continue
                    col = t.column(t.primary_key[0])
                    if col.sequence is None or col.type_name not in INTEGER_TYPES:
                        continue
                    seq_schema, _, seq_name = col.sequence.partition(".")
                    row = pg.execute("SELECT last_value FROM pg_sequences WHERE schemaname = %s "
                                     "AND sequencename = %s", (seq_schema, seq_name)).fetchone()
                    last = int(row[0]) if row and row[0] is not None else 0
                    name = quote_ident(sqlite_table_name(t.schema, t.name))
                    top_row = conn.execute(f"SELECT max({quote_ident(col.name)}) FROM {name}").fetchone()
                    assert top_row is not None  # max() always returns one row
                    top = top_row[0]
                    nxt = int(top or 0) + 1
                    checked.append(f"{col.sequence}: replica next {nxt}, source last_value {last}")
                    if nxt < last:
                        behind.append(f"{col.sequence} ({t.qualified}.{col.name}): replica next id {nxt} "
                                      f"< source last_value {last}")
        finally:
            conn.close()
        return Gate("sequences", FAIL if behind else PASS, f"{len(checked)} sequence(s)",
                    "replica max(pk)+1 >= source last_value", "; ".join(behind or checked))

    def integrity(self) -> Gate:
        conn = self.replica()
        try:
            d1 = str(getattr(self.target, "label", self.target)).lower().startswith("d1+")  # D1 refuses integrity_check
            problems = [r[0] for r in conn.execute("PRAGMA quick_check" if d1 else "PRAGMA integrity_check")
                        if r[0] != "ok"]
            fks = conn.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            conn.close()
        detail = "; ".join(problems[:5])
        if fks:
            detail += ("; " if detail else "") + "; ".join(f"{r[0]} rowid {r[1]} -> {r[2]}" for r in fks[:5])
        bad = bool(problems or fks)
        return Gate("integrity", FAIL if bad else PASS,
                    f"{len(problems)} integrity problem(s), {len(fks)} foreign key violation(s)", "0 and 0", detail)

    def backup(self) -> Gate:
        conn = self.replica()
        try:
            record = state.read_record(conn, CUTOVER_SCOPE, "backup")
        finally:
            conn.close()
        if not record:
            return Gate("backup exists", WARN, "no backup", "a backup file",
                        "no backup recorded; `pg2edge cutover backup` (promote takes one too)")
        if not Path(record["path"]).is_file():
            return Gate("backup exists", WARN, "file missing", "a backup file",
                        f"recorded backup {record['path']} is gone")
        return Gate("backup exists", PASS, record["path"], "a backup file", f"taken {record['time']}")


GATES: list[Callable[[_Run], Gate]] = [
    _Run.source_reachable, _Run.slot, _Run.lag, _Run.retry_queue, _Run.dlq, _Run.validation,
    _Run.schema_drift, _Run.row_counts, _Run.sequences, _Run.integrity, _Run.backup]

_GATE_NAMES = {
    "source_reachable": "source reachable", "slot": "replication slot", "lag": "replica lag",
    "retry_queue": "retry queue empty", "dlq": "DLQ empty", "validation": "last validation",
    "schema_drift": "no schema drift", "row_counts": "row counts equal", "sequences": "sequences",
    "integrity": "integrity", "backup": "backup exists"}


def run_checklist(dsn: str, target: str | Path, *, thresholds: CutoverConfig | None = None,
                  options: TranslateConfig | None = None) -> Checklist:
    """Measure every cutover gate; ``checklist.ok`` is False when any gate FAILed."""

    remote = is_remote(target)
    target = target if remote else Path(target)
    run = _Run(dsn, target, thresholds or CutoverConfig(), options or TranslateConfig())
    checklist = Checklist(source=dsnlib.describe(dsn), target=str(target))
    if not remote and not Path(target).is_file():
        checklist.gates.append(Gate("replica exists", FAIL, "missing", "a replica file", f"{target} does not exist"))
        return checklist
    started = time.monotonic()
    for gate in GATES:
        try:
            checklist.gates.append(gate(run))
        except (Pg2EdgeError, psycopg.Error, apsw.Error, KeyError, ValueError) as exc:
            name = _GATE_NAMES[gate.__name__]
            log.info("gate %s could not be measured: %s", name, exc)
            checklist.gates.append(Gate(name, FAIL, "not measured", "", dsnlib.scrub(str(exc), dsn)))
    log.info("cutover checklist for %s: %d gates in %.2f s", target, len(checklist.gates), time.monotonic() - started)
    return checklist


__all__ = ["Checklist", "Gate", "run_checklist"]
