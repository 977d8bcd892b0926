"""pg2edge's own tables inside D1, and the guard statements that make a batch exactly-once.

D1 has no interactive transactions: a batch cannot read, decide and then write.
So every batch the D1 sink sends starts with a *position guard*, a statement
that fails (and with it the whole batch, which D1 rolls back) unless the
position stored in D1 is still the one the batch was planned on::

    UPDATE _pg2edge_guard SET ok = (<stored commit_lsn> = ?)   -- CHECK (ok = 1)

A batch whose answer was lost and that is sent again therefore fails on its
guard instead of applying twice; the sink then reads the position and skips
what D1 already has. A statement that must change a row (an UPDATE filling
unchanged TOAST columns) is followed by ``UPDATE _pg2edge_guard SET ok =
(changes() > 0)``, so a missing row fails the batch instead of passing silently.
"""

from __future__ import annotations

from pg2edge.pipeline.d1.limits import Stmt
from pg2edge.pipeline.sinks.retry import DDL as QUEUE_DDL
from pg2edge.pipeline.state import DDL as STATE_DDL
from pg2edge.pipeline.state import STATE_TABLE
from pg2edge.translators.quoting import quote_ident

GUARD_TABLE = "_pg2edge_guard"
GUARD_NAME = "pg2edge_guard"  # the CHECK constraint's name: D1's error message carries it
_G = quote_ident(GUARD_TABLE)
_S = quote_ident(STATE_TABLE)

GUARD_DDL: list[Stmt] = [
    (f"CREATE TABLE IF NOT EXISTS {_G} (id INTEGER PRIMARY KEY CHECK (id = 1), ok INTEGER NOT NULL, "
     f"CONSTRAINT {GUARD_NAME} CHECK (ok = 1))", []),
    (f"INSERT OR IGNORE INTO {_G} (id, ok) VALUES (1, 1)", []),
]


def schema_statements() -> list[Stmt]:
    """The state table, the retry queue and the guard: created once, idempotently, in one batch."""
    return [(STATE_DDL, []), (QUEUE_DDL, []), *GUARD_DDL]


def position_guard(expected_commit_lsn: int | None) -> Stmt:
    """Fails the batch unless D1's stored commit LSN is ``expected_commit_lsn`` (None: nothing stored)."""
    return (f"UPDATE {_G} SET ok = (coalesce((SELECT json_extract(value, '$.commit_lsn') FROM {_S} "
            "WHERE scope = 'position' AND name = 'applied'), -1) = ?) WHERE id = 1",
            [-1 if expected_commit_lsn is None else expected_commit_lsn])


def changed_guard() -> Stmt:
    """Fails the batch when the statement just before it changed no row."""
    return (f"UPDATE {_G} SET ok = (changes() > 0) WHERE id = 1", [])


def is_guard_failure(message: str) -> bool:
    return GUARD_NAME in message
