"""Capture of writes the replica takes after promote, and their replay to PostgreSQL on rollback.

Why triggers and not an apsw ``Session`` changeset: a session records only
the changes made through its own connection, and after promote the
application writes through its own connections (or other processes). So
promote installs, on each moved table, three ``AFTER INSERT/UPDATE/DELETE``
triggers that append the old and new row (JSON objects) to
``_pg2edge_changelog``. Rollback replays that log in order (``id``) in one
PostgreSQL transaction: values go back as text with ``%s`` binds and an
explicit cast to the column's type, identifiers via ``psycopg.sql``; BLOBs
travel as ``["blob", hex]``. Limit: values the codec stored in a form
PostgreSQL cannot cast back from text (unix timestamps, arrays as JSON) make
the replay fail naming the table, column and value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, cast

import apsw
import psycopg
from psycopg import sql

from pg2edge.errors import SourceError
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

CHANGELOG_TABLE = "_pg2edge_changelog"
_CL = quote_ident(CHANGELOG_TABLE)
DDL = (f"CREATE TABLE IF NOT EXISTS {_CL} (id INTEGER PRIMARY KEY AUTOINCREMENT, source_table TEXT NOT NULL, "
       "op TEXT NOT NULL, old_row TEXT, new_row TEXT, "
       "at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), replayed_at TEXT)")
OPS = {"INSERT": "I", "UPDATE": "U", "DELETE": "D"}


class ReplayError(SourceError):
    """A logged replica write cannot be applied to PostgreSQL (names the table, change and error)."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _trigger_name(table: str, op: str) -> str:
    return f"_pg2edge_log_{table}_{op.lower()}"


def _row_json(columns: Sequence[str], alias: str) -> str:
    parts = []
    for c in columns:
        ref = f"{alias}.{quote_ident(c)}"
        parts.append(f"{_literal(c)}, CASE typeof({ref}) WHEN 'blob' THEN json_array('blob', hex({ref})) "
                     f"ELSE {ref} END")
    return f"json_object({', '.join(parts)})"


def install(conn: apsw.Connection, tables: dict[str, str]) -> list[str]:
    """Create the changelog and the triggers on ``tables`` (sqlite name -> source 'schema.table'); idempotent.

    Returns the names of the triggers that were created (empty when all existed).
    """
    conn.execute(DDL)
    created = []
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for table, source in tables.items():
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(table)})")]
        if not columns:
            raise ReplayError(f"replica table {table} (of {source}) does not exist; cannot capture its writes")
        for op, code in OPS.items():
            name = _trigger_name(table, op)
            if name in existing:
                continue
            old = _row_json(columns, "OLD") if op != "INSERT" else "NULL"
            new = _row_json(columns, "NEW") if op != "DELETE" else "NULL"
            conn.execute(f"CREATE TRIGGER {quote_ident(name)} AFTER {op} ON {quote_ident(table)} BEGIN "
                         f"INSERT INTO {_CL} (source_table, op, old_row, new_row) "
                         f"VALUES ({_literal(source)}, '{code}', {old}, {new}); END")
            created.append(name)
    return created


def uninstall(conn: apsw.Connection, tables: Sequence[str]) -> list[str]:
    """Drop the capture triggers of ``tables``; returns the dropped names. The log itself is kept."""
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    dropped = []
    for table in tables:
        for op in OPS:
            name = _trigger_name(table, op)
            if name in existing:
                conn.execute(f"DROP TRIGGER {quote_ident(name)}")
                dropped.append(name)
    return dropped


def pending(conn: apsw.Connection) -> list[tuple[int, str, str, dict[str, Any] | None, dict[str, Any] | None]]:
    """Logged writes not replayed yet, in order: (id, source table, op, old row, new row)."""
    try:
        rows = cast(list[tuple[int, str, str, str | None, str | None]],
                    conn.execute(f"SELECT id, source_table, op, old_row, new_row FROM {_CL} "
                                 "WHERE replayed_at IS NULL ORDER BY id").fetchall())
    except apsw.SQLError:
        return []  # never promoted: no changelog
    return [(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, json.loads(r[4]) if r[4] else None)
            for r in rows]


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 2 and value[0] == "blob":
        return bytes.fromhex(value[1])
    return str(value)


class _Target:
    """One source table: its column types and primary key, read from the catalog."""

    def __init__(self, conn: psycopg.Connection[Any], qualified: str) -> None:
        schema, _, name = qualified.partition(".")
        self.ident = sql.Identifier(schema, name)
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "coalesce(a.attnum = ANY(i.indkey), false) FROM pg_attribute a "
            "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''",
            (self.ident.as_string(conn),)).fetchall()
        self.types = {r[0]: r[1] for r in rows}
        self.key = [r[0] for r in rows if r[2]] or list(self.types)

    def _cast(self, column: str) -> sql.Composable:
        if column not in self.types:
            raise KeyError(column)
        return sql.SQL("%s::{}").format(sql.SQL(self.types[column]))  # a catalog type name, not user input

    def _match(self, old: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
        parts = [sql.SQL("{} IS NOT DISTINCT FROM {}").format(sql.Identifier(k), self._cast(k)) for k in self.key]
        return sql.SQL(" AND ").join(parts), [_value(old.get(k)) for k in self.key]

    def statement(self, op: str, old: dict[str, Any] | None, new: dict[str, Any] | None
                  ) -> tuple[sql.Composed, list[Any]]:
        if op == "I":
            assert new is not None
            cols = [c for c in new if c in self.types]
            return (sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                self.ident, sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(self._cast(c) for c in cols)), [_value(new[c]) for c in cols])
        assert old is not None
        where, params = self._match(old)
        if op == "D":
            return sql.SQL("DELETE FROM {} WHERE {}").format(self.ident, where), params
        assert new is not None
        cols = [c for c in new if c in self.types]
        sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), self._cast(c)) for c in cols)
        return (sql.SQL("UPDATE {} SET {} WHERE {}").format(self.ident, sets, where),
                [_value(new[c]) for c in cols] + params)


def replay(pg: psycopg.Connection[Any], changes: Sequence[tuple[int, str, str, Any, Any]]) -> dict[str, int]:
    """Apply logged writes in order inside the caller's transaction; returns the count per source table."""
    targets: dict[str, _Target] = {}
    done: dict[str, int] = {}
    for change_id, table, op, old, new in changes:
        target = targets.get(table) or targets.setdefault(table, _Target(pg, table))
        stmt, params = target.statement(op, old, new)
        try:
            with pg.transaction():  # a savepoint: the error names this change
                pg.execute(stmt, params)
        except psycopg.Error as exc:
            row = json.dumps(new if new is not None else old)[:300]
            raise ReplayError(f"cannot replay replica change {change_id} ({op} on {table}, row {row}) to "
                              f"PostgreSQL: {type(exc).__name__}: {exc.diag.message_primary}") from exc
        done[table] = done.get(table, 0) + 1
    for target in targets.values():
        _bump_sequences(pg, target)
    return done


def _bump_sequences(pg: psycopg.Connection[Any], target: _Target) -> None:
    """Move each column sequence past the ids the replica assigned, so PostgreSQL does not reuse them."""
    name = target.ident.as_string(pg)
    for column in target.key:
        row = pg.execute("SELECT pg_get_serial_sequence(%s, %s)", (name, column)).fetchone()
        if row is None or row[0] is None:
            continue
        top = pg.execute(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), target.ident)).fetchone()
        if top and top[0] is not None:
            pg.execute("SELECT setval(%s::regclass, greatest(%s::bigint, "
                       "coalesce(pg_sequence_last_value(%s::regclass), 0)))", (row[0], int(top[0]), row[0]))


def mark_replayed(conn: apsw.Connection, ids: Sequence[int]) -> None:
    """Mark the logged writes ``ids`` (a prefix of :func:`pending`, in id order) replayed: one statement, so
    a remote replica takes it within D1's parameter limit and in the caller's one batch."""
    if ids:
        conn.execute(f"UPDATE {_CL} SET replayed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                     "WHERE replayed_at IS NULL AND id <= ?", (max(ids),))
