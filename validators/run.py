"""``validate()``: compare a replica with its source at a known LSN, re-check what differs, optionally repair.

1. Open a REPEATABLE READ snapshot on the source and note its LSN.
2. Wait until the replica covers that LSN (validators/waiting.py), then pin a
   read transaction on the replica.
3. Compare per table: counts, a random sample, or every row (chunk checksums).
4. Re-check the differing keys: read only those keys again from a fresh source
   snapshot once the replica covers its new LSN (up to ``RECHECK_ROUNDS``
   times), so rows that were changing in flight are not reported.
5. With ``repair``, re-copy the keys that still differ through the applier.
6. Record the outcome in the replica's state table (scope ``validation``, name ``last``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import state
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.remote import connect, is_remote
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sources.snapshot import published_tables
from pg2edge.pipeline.status import open_readonly
from pg2edge.pipeline.targetfile import check_existing_replica
from pg2edge.translators.codec import row_codec
from pg2edge.translators.introspect import introspect
from pg2edge.validators.compare import differing_keys, mismatches
from pg2edge.validators.full import diff_full
from pg2edge.validators.repair import repair_keys
from pg2edge.validators.replica import ReplicaSnapshot
from pg2edge.validators.report import TableResult, ValidationReport
from pg2edge.validators.source import Key, SourceSnapshot, TableSide
from pg2edge.validators.waiting import wait_for_replica

log = logging.getLogger(__name__)

Mode = Literal["count", "sample", "full"]
MODES = ("count", "sample", "full")
RECHECK_ROUNDS = 3


def _replica_tables(target: str | Path) -> tuple[str | None, list[str]]:

    conn = open_readonly(target)
    try:
        stream = state.read_stream(conn)
        known = sorted(state.read_tables(conn))
    finally:
        conn.close()
    return (stream.publication if stream else None), known


def table_sides(dsn: str, target: str | Path, *, tables: str | Sequence[str] | None,
                options: TranslateConfig) -> list[TableSide]:
    """The tables to validate (default: the replica's publication) with their codecs."""

    if isinstance(tables, str):
        tables = [t.strip() for t in tables.split(",") if t.strip()]
    publication, known = _replica_tables(target)
    names: Sequence[tuple[str, ...]]
    if tables:
        names = [tuple(t.split(".", 1)) if "." in t else ("public", t) for t in tables]
    elif publication:
        names = published_tables(dsn, publication)
    else:
        names = [tuple(t.split(".", 1)) for t in known]
    if not names:
        raise ConfigError(f"no tables to validate: {target} records no publication or tables; pass --tables")
    with dsnlib.connect(dsn, autocommit=True) as conn:
        schema = introspect(conn, schemas=sorted({s for s, _ in names}), tables=sorted({t for _, t in names}))
    sides = []
    for s, t in names:
        try:
            table = schema.table(f"{s}.{t}")
        except KeyError:
            raise ConfigError(f"table {s}.{t} does not exist on the source") from None
        sides.append(TableSide(table, row_codec(table, options=options)) if table.primary_key
                     else _Keyless(table, row_codec(table, options=options)))
    return sides


class _Keyless(TableSide):
    """A table without a primary key: only counts are compared."""

    def __init__(self, table: object, codec: object) -> None:  # noqa: D107
        self.table = table  # type: ignore[assignment]
        self.codec = codec  # type: ignore[assignment]
        self.key = ()


def _first_pass(src: SourceSnapshot, rep: ReplicaSnapshot, side: TableSide, mode: str, sample_size: int,
                result: TableResult) -> list[Key]:
    result.replica_rows = rep.count(side)
    if mode == "count" or not side.key:
        result.source_rows = src.count(side)
        return []
    if mode == "sample":
        result.source_rows = src.count(side)
        keys = src.sample_keys(side, sample_size)
        result.checked = len(keys)
        return differing_keys(keys, src.rows_by_keys(side, keys), rep.rows_by_keys(side, keys))
    diff = diff_full(src, rep, side)
    result.source_rows = diff.source_rows
    result.checked = max(diff.source_rows, result.replica_rows)
    result.chunks = diff.chunks
    return diff.keys


def validate(dsn: str, target: str | Path, *, tables: str | Sequence[str] | None = None, mode: str = "full",
             sample_size: int = 1000, repair: bool = False, options: TranslateConfig | None = None,
             timeout: float = 60.0) -> ValidationReport:
    """Compare ``target`` with ``dsn`` at a known LSN; ``report.clean`` says whether they agree."""
    if mode not in MODES:
        raise ConfigError(f"unknown validation mode {mode!r} (count, sample, full)")
    if not is_remote(target):
        check_existing_replica(target)  # missing, garbage, truncated or not a replica: one error naming it
    options = options or TranslateConfig()
    started = time.monotonic()
    sides = table_sides(dsn, target, tables=tables, options=options)
    results = {side.table.qualified: TableResult(side.table.qualified) for side in sides}
    pending: dict[str, list[Key]] = {}
    with SourceSnapshot(dsn) as src:
        reached = wait_for_replica(dsn, target, src.lsn, timeout=timeout)
        report = ValidationReport(lsn=format_lsn(src.lsn), mode=mode, replica_reached=reached.how)
        with ReplicaSnapshot.open(target) as rep:
            for side in sides:
                pending[side.table.qualified] = _first_pass(src, rep, side, mode, sample_size,
                                                            results[side.table.qualified])
    _recheck(dsn, target, sides, results, pending, mode=mode, timeout=timeout)
    if repair and any(results[s.table.qualified].mismatches for s in sides):

        keys = {s.table.qualified: [tuple(m.key[k] for k in s.key) for m in results[s.table.qualified].mismatches]
                for s in sides}
        done = repair_keys(dsn, target, sides, keys, options=options)
        for name, count in done.items():
            results[name].repaired = count
        report.repaired = True
    report.tables = [results[s.table.qualified] for s in sides]
    report.seconds = time.monotonic() - started
    _record(target, report)
    return report


def _recheck(dsn: str, target: str | Path, sides: list[TableSide], results: dict[str, TableResult],
             pending: dict[str, list[Key]], *, mode: str, timeout: float) -> None:
    """Read differing keys (and differing counts) again after the replica caught up; keep what still differs.

    The replica is read at or after the source's LSN, so while writes continue its count can be
    ahead of the source snapshot's. In full mode every key was compared, so the count follows from
    the keys: the replica's rows at the source's LSN are the source's rows plus the extra keys minus
    the missing ones that still differ once settled. Counts that stay off in count or sample mode
    are settled the same way: the keys of that table are compared in full (chunk checksums) and the
    differing ones re-read.
    """
    by_name = {s.table.qualified: s for s in sides}
    keyed = {n for n, s in by_name.items() if s.key}
    settled = set(keyed) if mode == "full" else set()
    for round_no in range(RECHECK_ROUNDS):
        counts_off = [n for n, r in results.items() if n not in settled and r.source_rows != r.replica_rows]
        if not any(pending.values()) and not counts_off:
            break
        with SourceSnapshot(dsn) as src:
            wait_for_replica(dsn, target, src.lsn, timeout=timeout)
            with ReplicaSnapshot.open(target) as rep:
                for name in counts_off:
                    results[name].source_rows = src.count(by_name[name])
                    results[name].replica_rows = rep.count(by_name[name])
                _recheck_keys(src, rep, by_name, results, pending, round_no)
    escalate = [n for n in keyed - settled if results[n].source_rows != results[n].replica_rows]
    if escalate:
        log.info("counts still differ for %s while writes continue: comparing their keys in full",
                 ", ".join(escalate))
        with SourceSnapshot(dsn) as src:
            wait_for_replica(dsn, target, src.lsn, timeout=timeout)
            with ReplicaSnapshot.open(target) as rep:
                for name in escalate:
                    diff = diff_full(src, rep, by_name[name])
                    results[name].source_rows = diff.source_rows
                    results[name].chunks = diff.chunks
                    pending[name] = sorted(set(pending.get(name, [])) | set(diff.keys), key=repr)
                    settled.add(name)
        for round_no in range(RECHECK_ROUNDS):
            if not any(pending.get(n) for n in escalate):
                break
            with SourceSnapshot(dsn) as src:
                wait_for_replica(dsn, target, src.lsn, timeout=timeout)
                with ReplicaSnapshot.open(target) as rep:
                    mine = {n: pending[n] for n in escalate}
                    _recheck_keys(src, rep, by_name, results, mine, round_no)
                    pending.update(mine)
    for name in settled:
        r = results[name]
        if r.source_rows is not None:
            extra = sum(1 for m in r.mismatches if m.kind == "extra")
            missing = sum(1 for m in r.mismatches if m.kind == "missing")
            r.replica_rows = r.source_rows + extra - missing


def _recheck_keys(src: SourceSnapshot, rep: ReplicaSnapshot, by_name: dict[str, TableSide],
                  results: dict[str, TableResult], pending: dict[str, list[Key]], round_no: int) -> None:
    for name, keys in pending.items():
        if not keys:
            continue
        side = by_name[name]
        a, b = src.rows_by_keys(side, keys), rep.rows_by_keys(side, keys)
        results[name].rechecked += len(keys) if round_no == 0 else 0
        still = differing_keys(keys, a, b)
        pending[name] = still
        results[name].mismatches = mismatches(side, still, a, b)
        log.info("%s: %d of %d differing keys still differ at %s (round %d)", name, len(still),
                 len(keys), format_lsn(src.lsn), round_no + 1)


def _record(target: str | Path, report: ValidationReport) -> None:

    db: Any = connect(target) if is_remote(target) else open_replica(target)  # type: ignore[arg-type]
    try:
        with db:
            state.write_record(db, "validation", "last", {
                "at": datetime.now(UTC).isoformat(timespec="seconds"), "lsn": report.lsn,
                "mode": report.mode, "clean": report.clean, "repaired": report.repaired,
                "mismatches": sum(len(t.mismatches) for t in report.tables)})
    finally:
        db.close()
