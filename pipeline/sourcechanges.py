"""Changes pg2edge makes on the source, each with the SQL that undoes it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from pg2edge.dsn import connect, control, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceChange:
    """One change on the source: what it is, the SQL that made it and the SQL that undoes it."""

    description: str
    undo_sql: str
    sql: str = ""


def apply_changes(dsn: str, changes: Sequence[SourceChange]) -> None:
    """Run each change's SQL on the source (one transaction), logging each one."""
    with connect(dsn) as conn, conn.transaction():
        for change in changes:
            if change.sql:
                log.warning("changing the source at %s: %s", describe(dsn), change.description)
                conn.execute(change.sql.encode())


def teardown(dsn: str, changes: Sequence[SourceChange]) -> list[str]:
    """Undo recorded source changes in reverse order; returns what was undone.

    Each undo runs on its own (autocommit) so one already-gone object does
    not stop the rest; undo statements are written to tolerate that
    (``IF EXISTS``).
    """
    done: list[str] = []
    with control(dsn) as conn:
        for change in reversed(changes):
            log.warning("undoing on the source at %s: %s", describe(dsn), change.description)
            try:
                conn.execute(change.undo_sql.encode())
            except psycopg.errors.ObjectInUse:
                log.warning("%s is still in use; terminate its consumer and retry teardown", change.description)
                raise
            done.append(change.description)
    return done
