"""analyze(): sample the statistics (once, or twice over a window), classify, find blockers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from pg2edge import dsn as dsnlib
from pg2edge.analyzers import blockers as blk
from pg2edge.analyzers.catalog import Snapshot, TableFacts, max_row_bytes, read_counters, read_snapshot
from pg2edge.analyzers.groups import connected_groups
from pg2edge.analyzers.model import AnalysisReport, Issue, Summary, TableReport
from pg2edge.analyzers.statements import top_queries
from pg2edge.analyzers.verdicts import MOVABLE, VERDICT_ORDER, verdict
from pg2edge.config import AnalyzeConfig
from pg2edge.errors import EmptyStatsError, PrivilegeError

DAY = 86400.0
READ_HEAVY_SHARE = 0.80
DATASET_LIMIT_BYTES = 50 * 1024**3


def _reads(c: dict[str, int]) -> int:
    return c["seq_scan"] + c["idx_scan"]


def _writes(c: dict[str, int]) -> int:
    return c["n_tup_ins"] + c["n_tup_upd"] + c["n_tup_del"]


def _windowed(conn: psycopg.Connection[Any], snap: Snapshot, schemas: list[str], window: float,
              sleep: Callable[[float], None]) -> None:
    """Replace each table's counters by their increase over ``window`` seconds."""
    before = {oid: dict(f.counters) for oid, f in snap.tables.items()}
    sleep(window)
    after, live = read_counters(conn, schemas)
    for oid, facts in snap.tables.items():
        now = after.get(oid, facts.counters)
        facts.counters = {k: max(0, now[k] - before[oid].get(k, 0)) for k in now}
        facts.live_rows = live.get(oid, 0) or facts.live_rows
    snap.stats_age_seconds = window


def _report_for(facts: TableFacts, age: float, config: AnalyzeConfig) -> TableReport:
    c = facts.counters
    rep = TableReport(schema=facts.schema, table=facts.name, reads=_reads(c), writes=_writes(c),
                      rows=facts.live_rows, bytes=facts.bytes, seq_tup_read=c["seq_tup_read"],
                      idx_tup_fetch=c["idx_tup_fetch"])
    rep.verdict = verdict(rep.ratio, config.verdicts)
    if age > 0:
        rep.reads_per_day = rep.reads / age * DAY
        rep.writes_per_day = rep.writes / age * DAY
    return rep


def _fk_issues(snap: Snapshot, reports: dict[int, TableReport]) -> None:
    names = {oid: f.qualified for oid, f in snap.tables.items()}
    movable = {oid for oid, r in reports.items() if r.verdict in MOVABLE}
    edges = []
    for child, parent, conname in snap.fks:
        if child not in reports or parent not in reports or child == parent:
            continue
        if child in movable and parent not in movable:
            reports[child].blockers.append(Issue(
                "fk_to_kept_table",
                f"{names[child]} references {names[parent]} (constraint {conname}), which stays in PostgreSQL "
                f"(verdict {reports[parent].verdict}): move them together or drop the foreign key on the replica"))
        elif parent in movable and child not in movable:
            reports[parent].warnings.append(Issue(
                "referenced_by_kept_table",
                f"{names[child]} (verdict {reports[child].verdict}) references {names[parent]} "
                f"(constraint {conname}): after cutover PostgreSQL can no longer check it"))
        if child in movable and parent in movable:
            edges.append((names[child], names[parent]))
    groups = connected_groups((names[o] for o in movable), edges)
    for oid in movable:
        members = groups[names[oid]]
        reports[oid].group = members if len(members) > 1 else None


def _summary(tables: list[TableReport], notes: list[str]) -> Summary:
    reads = sum(t.reads for t in tables)
    writes = sum(t.writes for t in tables)
    share = None if reads + writes == 0 else reads / (reads + writes)
    candidates = [t for t in tables if t.verdict in MOVABLE]
    candidate_bytes = sum(t.bytes for t in candidates)
    counts = {v: sum(1 for t in tables if t.verdict == v) for v in VERDICT_ORDER}
    read_heavy = share is not None and share > READ_HEAVY_SHARE
    fits = candidate_bytes < DATASET_LIMIT_BYTES
    blocked = [t.qualified for t in candidates if t.blockers]
    ready = [t.qualified for t in candidates if not t.blockers]
    if not candidates:
        text = "No table is read-heavy enough to move: keep the workload on PostgreSQL."
    elif not fits:
        text = ("The candidate tables hold more than 50 GB: consider PostgreSQL read replicas or sharding "
                "before edge SQLite.")
    else:
        text = (f"Move {len(ready)} table(s) to edge SQLite: {', '.join(ready) or 'none yet'}."
                + (f" Resolve the blockers first for: {', '.join(blocked)}." if blocked else "")
                + (" The overall workload is read-heavy (> 80% reads)." if read_heavy else
                   " The overall workload is not > 80% reads: move only the listed tables, keep the rest."))
    return Summary(read_share=share, read_heavy=read_heavy, candidate_bytes=candidate_bytes,
                   total_bytes=sum(t.bytes for t in tables), fits_dataset_limit=fits, verdicts=counts,
                   recommendation=text, notes=notes)


def analyze(dsn: str, *, config: AnalyzeConfig | None = None,
            sleep: Callable[[float], None] = time.sleep) -> AnalysisReport:
    """Rank every table of the configured schemas by read/write ratio and report blockers.

    With ``config.window > 0`` the statistics are sampled twice, ``window``
    seconds apart, and only the increase is used (the current traffic).
    Raises EmptyStatsError when no table saw any traffic.
    """
    config = config or AnalyzeConfig()
    profile = blk.PROFILES[config.target_profile]
    with dsnlib.connect(dsn, autocommit=True) as conn:
        try:
            snap = read_snapshot(conn, config.schemas)
            if config.window > 0:
                _windowed(conn, snap, config.schemas, config.window, sleep)
            age = snap.stats_age_seconds
            reports = {oid: _report_for(f, age, config) for oid, f in snap.tables.items()}
            for oid, facts in snap.tables.items():
                blockers, warnings = blk.table_issues(
                    facts, profile=profile, max_row=lambda f: max_row_bytes(conn, f))
                reports[oid].blockers += blockers
                reports[oid].warnings += warnings
            _fk_issues(snap, reports)
            queries, note = top_queries(conn, [(f.schema, f.name) for f in snap.tables.values()])
            row = conn.execute("SELECT current_setting('wal_level')").fetchone()
            wal_level = str(row[0]) if row else None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PrivilegeError(
                f"PostgreSQL at {dsnlib.describe(dsn)}: {str(exc).strip()} "
                "(the analyzer needs to read pg_stat_user_tables, pg_class and pg_stats; "
                "grant pg_read_all_stats to the role)") from None
    if all(r.reads == 0 and r.writes == 0 for r in reports.values()):
        where = f"during the {config.window:g} s window" if config.window > 0 else \
            f"since the statistics were reset ({snap.stats_reset or 'server start'})"
        raise EmptyStatsError(
            f"no table traffic recorded in database {snap.database} {where}: run the application's workload "
            "(or `pg2edge sample workload`) and analyze again, or use --window 5m while the application runs")
    for rep in reports.values():
        rep.top_queries = queries.get(rep.qualified, [])
    notes = [note] if note else []
    problem = dsnlib.wal_level_problem(wal_level) if wal_level else None
    if problem:
        notes.append(f"{problem}: snapshot and sync refuse this source until then")
    if config.target_profile == "d1":
        notes.append("D1 limits: 10 GB per database, 1 MB per row")
    tables = sorted(reports.values(), key=_rank)
    return AnalysisReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), database=snap.database,
        stats_reset=snap.stats_reset, window_seconds=float(config.window),
        target_profile=config.target_profile, tables=tables, summary=_summary(tables, notes), wal_level=wal_level)


def _rank(t: TableReport) -> tuple[int, float, str]:
    ratio = t.ratio
    return (VERDICT_ORDER.index(t.verdict), -(ratio if ratio is not None else -1.0), t.qualified)
