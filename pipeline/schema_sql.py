"""A schema change as SQL statements, for the sinks that send a batch instead of running a transaction.

The libSQL sink (one Hrana batch) and the D1 sink (one ``env.DB.batch()``)
cannot read, decide and write inside the target's transaction. They follow a
:class:`~pg2edge.pipeline.events.SchemaChange` with exactly the code the SQLite
file sink runs (:func:`pg2edge.pipeline.schema_apply.follow`, one set of
rules) against a :class:`SchemaRecorder`: an in-memory SQLite database holding
the target's schema and pg2edge state rows (no table rows). Every statement
``follow`` runs is run there, so its reads see the shape the earlier changes
of the batch left; every write is also recorded, and the recorded statements
go into the sink's batch at the change's position, with the rows and the
position (one atomic unit).

``SAVEPOINT`` / ``ROLLBACK TO`` work as in the file sink: what was recorded
since the savepoint is dropped, so a table ``follow`` pauses contributes only
its pause. A statement the shadow accepts but the target refuses (a new
UNIQUE index that the target's rows violate: the shadow has no rows) fails
the batch at that step; the sink then plans the batch again with the change
refused (:func:`pg2edge.pipeline.schema_apply.refuse`: its tables paused, named).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.pipeline import state
from pg2edge.translators.quoting import quote_ident

if TYPE_CHECKING:
    from pg2edge.pipeline.sinks.statements import TableMapping

log = logging.getLogger(__name__)

Stmt = tuple[str, list[Any]]
Reader = Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]]  # runs a read on the target, returns its rows

_READ = re.compile(r"^\s*(SELECT|WITH|PRAGMA\s+\w+\s*(\(|$)|EXPLAIN|VALUES)", re.I)
_SAVEPOINT = re.compile(r"^\s*SAVEPOINT\s+(\w+)\s*$", re.I)
_ROLLBACK_TO = re.compile(r"^\s*ROLLBACK\s+(?:TRANSACTION\s+)?TO\s+(?:SAVEPOINT\s+)?(\w+)\s*$", re.I)
_RELEASE = re.compile(r"^\s*RELEASE\s+(?:SAVEPOINT\s+)?(\w+)\s*$", re.I)
_SCHEMA = ("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' "
           "ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql\\_%' ESCAPE '\\'")
_ORDER = {"table": 0, "index": 1, "view": 2, "trigger": 3}
_IF_NOT_EXISTS = re.compile(r'^\s*CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+"((?:[^"]|"")+)"', re.I)


class SchemaRecorder:
    """The target's schema and state in memory; runs every statement there and records the writes."""

    in_transaction = True  # pipeline.state writers require it: the recorded writes go into the sink's batch

    def __init__(self, read: Reader) -> None:
        self.shadow = apsw.Connection(":memory:")
        self.stmts: list[Stmt] = []
        self._marks: dict[str, list[int]] = {}
        entries = sorted(read(_SCHEMA, ()), key=lambda r: _ORDER.get(str(r[0]), 9))
        for kind, name, sql in entries:
            try:
                self.shadow.execute(str(sql))
            except apsw.Error as exc:  # an FTS table's own tables exist once the virtual table does
                log.debug("schema shadow: %s %s not copied: %s", kind, name, exc)
        if any(str(r[1]) == state.STATE_TABLE for r in entries):
            t = quote_ident(state.STATE_TABLE)
            for row in read(f"SELECT scope, name, value, updated_at FROM {t}", ()):
                self.shadow.execute(f"INSERT OR REPLACE INTO {t} (scope, name, value, updated_at) "
                                    "VALUES (?, ?, ?, ?)", tuple(row))
        self.shadow.execute("BEGIN")  # SAVEPOINTs nest inside it, as in the file sink's batch transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> apsw.Cursor:
        m = _SAVEPOINT.match(sql)
        if m:
            self._marks.setdefault(m.group(1), []).append(len(self.stmts))
        elif (m := _ROLLBACK_TO.match(sql)) is not None:
            marks = self._marks.get(m.group(1))
            if marks:
                del self.stmts[marks[-1]:]
        elif (m := _RELEASE.match(sql)) is not None:
            marks = self._marks.get(m.group(1))
            if marks:
                marks.pop()
        elif not _READ.match(sql) and not self._exists(sql):
            self.stmts.append((sql, list(params)))
        return self.shadow.execute(sql, tuple(params))

    def _exists(self, sql: str) -> bool:
        """A ``CREATE ... IF NOT EXISTS`` of an object the target has: a no-op, not sent (pg2edge's own
        tables are created differently on some targets: tursodb has no WITHOUT ROWID)."""
        m = _IF_NOT_EXISTS.match(sql)
        return m is not None and self.shadow.execute("SELECT 1 FROM sqlite_schema WHERE name = ?",
                                                     (m.group(1).replace('""', '"'),)).fetchone() is not None

    def changes(self) -> int:
        return self.shadow.changes()

    def take(self) -> list[Stmt]:
        """The writes recorded since the last call."""
        out, self.stmts = self.stmts, []
        return out

    def table_info(self, table: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.shadow.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()]

    def as_connection(self) -> apsw.Connection:
        """Typed for ``pipeline.state`` and ``schema_apply``, which use ``execute`` (and ``in_transaction``)."""
        return cast(apsw.Connection, self)

    def close(self) -> None:
        self.shadow.close()


@dataclass
class RecordingFollower:
    """What :func:`pg2edge.pipeline.schema_apply.follow` needs of a sink, for a sink that batches: the
    recorder as its connection, the sink's own mappings (rekeyed and reshaped in place)."""

    recorder: SchemaRecorder
    mappings: dict[tuple[str, str], TableMapping]
    options: TranslateConfig
    forget: Callable[[], None] = field(default=lambda: None)
    conn: apsw.Connection = field(init=False)

    def __post_init__(self) -> None:
        self.conn = self.recorder.as_connection()

    def forget_tables(self) -> None:
        self.forget()


__all__ = ["RecordingFollower", "SchemaRecorder"]
