"""The state table inside every target, ``_pg2edge_state``: one JSON record per (scope, name).

The core's record store: the pipeline keeps positions, streams and snapshot runs in it
(:mod:`pg2edge.pipeline.state`), the schema translator the source types of the tables it creates
(:mod:`pg2edge.translators.recorded`). Writers never begin or commit: they take the caller's open
transaction (and refuse to run outside one), so a record is committed with the data it describes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import apsw

from pg2edge.errors import StateError

__all__ = ["DDL", "STATE_TABLE", "ensure_state_table", "read_record", "read_scope", "write_record"]

STATE_TABLE = "_pg2edge_state"
_T = '"' + STATE_TABLE + '"'  # a fixed name: quoted as SQL requires

DDL = (f"CREATE TABLE IF NOT EXISTS {_T} (scope TEXT NOT NULL, name TEXT NOT NULL, "
       "value TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (scope, name)) WITHOUT ROWID")


def ensure_state_table(conn: apsw.Connection) -> None:
    # present already: nothing to run (a remote replica's state table is a rowid table, and tursodb refuses
    # even to parse WITHOUT ROWID, IF NOT EXISTS or not)
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (STATE_TABLE,)).fetchone():
        return
    conn.execute(DDL)


def _require_txn(conn: apsw.Connection, what: str) -> None:
    if not conn.in_transaction:
        raise StateError(f"{what} must be written inside the caller's SQLite transaction (with the data)")


def write_record(conn: apsw.Connection, scope: str, name: str, value: Any) -> None:
    """Upsert one state record (inside the caller's transaction)."""
    _require_txn(conn, f"state record {scope}/{name}")
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    conn.execute(f"INSERT INTO {_T} (scope, name, value, updated_at) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                 (scope, name, json.dumps(value, sort_keys=True), now))


def read_record(conn: apsw.Connection, scope: str, name: str) -> Any | None:
    try:
        row = conn.execute(f"SELECT value FROM {_T} WHERE scope = ? AND name = ?", (scope, name)).fetchone()
    except apsw.SQLError:
        return None  # no state table yet
    return None if row is None else json.loads(row[0])


def read_scope(conn: apsw.Connection, scope: str) -> dict[str, Any]:
    try:
        rows: list[tuple[Any, ...]] = conn.execute(f"SELECT name, value FROM {_T} WHERE scope = ? ORDER BY name",
                                                   (scope,)).fetchall()  # (name TEXT, value JSON TEXT)
    except apsw.SQLError:
        return {}
    return {name: json.loads(value) for name, value in rows}
