"""Repair: re-copy exactly the differing keys from PostgreSQL through the normal apply path.

The replica's write lock is taken first (``BEGIN IMMEDIATE``), then the
source rows are read: the source snapshot is therefore at or after the
replica's position, and any change the sync daemon applies later (commit LSN
above that position) lands on top, so a repair never leaves an older value
behind. Rows still on the source become snapshot-read upserts (op ``r``),
rows gone from it become deletes (op ``d``); the stored LSN position is not
touched (``Applier.apply_repairs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pg2edge.config import TranslateConfig
from pg2edge.errors import TargetError
from pg2edge.pipeline import state
from pg2edge.pipeline.d1.daemon import is_d1_target, open_d1_sink
from pg2edge.pipeline.events import ChangeEvent, Op, SourceInfo
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.sinks.libsql import open_remote_sink
from pg2edge.pipeline.sinks.sqlite import Applier, open_replica
from pg2edge.validators.source import Key, SourceSnapshot, TableSide

log = logging.getLogger(__name__)


def _key_text(value: Any) -> str | None:
    """A replica key value as PostgreSQL-style text for the applier's encoder."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def repair_events(src: SourceSnapshot, side: TableSide, keys: Sequence[Key]) -> list[ChangeEvent]:
    rows = src.text_rows_by_keys(side, keys)
    info = SourceInfo(lsn=src.lsn, commit_lsn=src.lsn, tx_id=None, ts_ms=int(time.time() * 1000),
                      schema=side.table.schema, table=side.table.name, snapshot=True)
    events = []
    for key in keys:
        named = {k: _key_text(v) for k, v in zip(side.key, key)}
        row = rows.get(key)
        if row is None:
            events.append(ChangeEvent(Op.DELETE, before=named, after=None, source=info, key=named))
        else:
            events.append(ChangeEvent(Op.READ, before=None, after=dict(zip(side.codec.columns, row)), source=info,
                                      key=named))
    return events


def repair_keys(dsn: str, target: str | Path, sides: Sequence[TableSide], keys: Mapping[str, Sequence[Key]], *,
                options: TranslateConfig) -> dict[str, int]:
    """Re-copy ``keys`` (per qualified table) from the source; returns rows written (or deleted) per table."""

    if is_remote(target):
        return _repair_remote(dsn, target, sides, keys, options=options)
    db = open_replica(target)
    try:
        stream = state.read_stream(db)
        if stream is None:
            raise TargetError(f"replica {target} records no publication; was it made by pg2edge snapshot/sync?")
        applier = Applier(db, build_mappings(dsn, db, stream.publication, options))
        done: dict[str, int] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            with SourceSnapshot(dsn) as src:
                for side in sides:
                    todo = keys.get(side.table.qualified) or []
                    if todo:
                        done[side.table.qualified] = applier.apply_repairs(repair_events(src, side, todo))
                        log.info("repaired %d row(s) of %s from the source at LSN %s", done[side.table.qualified],
                                 side.table.qualified, src.lsn)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLITE_FULL may have rolled back already
                db.execute("ROLLBACK")
            raise
        return done
    finally:
        db.close()


def _repair_remote(dsn: str, target: Any, sides: Sequence[TableSide], keys: Mapping[str, Sequence[Key]], *,
                   options: TranslateConfig) -> dict[str, int]:
    """The same repair on a remote target: its position read first, then the source, then guarded batches
    (one Hrana batch on libSQL; D1 batches through the Worker)."""

    if getattr(target, "kind", None) == "d1" or is_d1_target(target):
        sink: Any = open_d1_sink(target, dsn=dsn, options=options)
    else:
        sink = open_remote_sink(target, dsn=dsn, options=options)
    try:
        done: dict[str, int] = {}
        events: list[ChangeEvent] = []
        with SourceSnapshot(dsn) as src:
            for side in sides:
                todo = keys.get(side.table.qualified) or []
                if todo:
                    evs = repair_events(src, side, todo)
                    events += evs
                    done[side.table.qualified] = len(evs)
        sink.apply_repairs(events)
        for name, n in done.items():
            log.info("repaired %d row(s) of %s on %s from the source", n, name, sink.label)
        return done
    finally:
        sink.close()
