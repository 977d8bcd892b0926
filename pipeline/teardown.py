"""Undo every change pg2edge made on the source for one replica (slot, publication, identities)."""

from __future__ import annotations

from pathlib import Path

from pg2edge.pipeline import state
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sourcechanges import teardown as undo_changes
from pg2edge.pipeline.sources import keeper
from pg2edge.pipeline.status import open_writable


def teardown_replica(*, dsn: str, target: str | Path) -> list[str]:
    """Drop the slot and publication this replica created; returns what was undone.

    The replica file keeps its data; its state forgets the stream, so the
    next ``snapshot`` starts afresh.
    """

    db = open_writable(target) if is_remote(target) else open_replica(target)
    try:
        run = state.read_run(db)
        keeper.stop_keeper(run.keeper_pid if run else None)
        changes = state.read_source_changes(db)
        done = undo_changes(dsn, changes)
        with db:
            state.clear_source_changes(db)
            db.execute(f"DELETE FROM {state._T} WHERE (scope = 'source' AND name = 'stream') "
                       "OR scope IN ('snapshot', 'position', 'table')")
        return done
    finally:
        db.close()
