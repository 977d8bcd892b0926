"""Write freeze of the moved tables on the source: a statement trigger that refuses every write.

Each frozen table gets one trigger, ``pg2edge_frozen``, ``BEFORE INSERT OR
UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT``, calling the one
function ``public.pg2edge_frozen()``, which raises SQLSTATE 25006
(read_only_sql_transaction) with a message naming the table and the undo.
Reads are untouched. Planning is separate from running (``plan_freeze`` /
``plan_unfreeze`` return :class:`SourceChange` objects with their undo SQL),
and both actions are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pg2edge.dsn import connect, describe
from pg2edge.pipeline import state
from pg2edge.pipeline.cutover import CUTOVER_SCOPE
from pg2edge.pipeline.cutover.errors import FreezeError
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sourcechanges import SourceChange

log = logging.getLogger(__name__)

FUNCTION_SCHEMA = "public"
FUNCTION_NAME = "pg2edge_frozen"
TRIGGER_NAME = "pg2edge_frozen"
FREEZE_RECORD = "freeze"
UNDO_HINT = "pg2edge cutover rollback"
LOCK_TIMEOUT = "10s"

_FUNCTION_BODY = f"""
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'read_only_sql_transaction',
    MESSAGE = format('table %I.%I is frozen: it moved to edge SQLite and is read-only on PostgreSQL '
                     '(%s refused); to make it writable again run: {UNDO_HINT}',
                     TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP),
    HINT = 'pg2edge cutover froze this table; undo with: {UNDO_HINT} (or pg2edge cutover unfreeze)';
END
"""

TableName = tuple[str, str]


@dataclass(frozen=True, slots=True)
class FreezeResult:
    """What a freeze or unfreeze changed (empty when nothing needed doing) and the WAL LSN right after it."""

    tables: list[str]
    changes: list[SourceChange] = field(default_factory=list)
    lsn: str | None = None


def _function() -> sql.Composable:
    return sql.Identifier(FUNCTION_SCHEMA, FUNCTION_NAME)


def _qualified(table: TableName) -> str:
    return f"{table[0]}.{table[1]}"


def parse_tables(tables: Sequence[str | TableName]) -> list[TableName]:
    """``'schema.table'``, ``'table'`` (schema public) or ``(schema, table)`` -> ``(schema, table)``."""
    out: list[TableName] = []
    for item in tables:
        if isinstance(item, tuple):
            out.append(item)
        else:
            schema, dot, name = item.strip().partition(".")
            out.append((schema, name) if dot else ("public", schema))
    return list(dict.fromkeys(out))


def _check_exist(conn: psycopg.Connection[Any], tables: Sequence[TableName]) -> None:
    missing = []
    for schema, name in tables:
        row = conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
        if row is None or row[0] not in ("r", "p"):
            missing.append(f"{schema}.{name}" + ("" if row is None else f" (relkind {row[0]}, not a table)"))
    if missing:
        raise FreezeError(f"cannot freeze: no such table {', '.join(missing)}")


def _with_partitions(conn: psycopg.Connection[Any], tables: Sequence[TableName]) -> list[TableName]:
    """Add the partitions of partitioned tables: a write straight into a partition must be refused too."""
    out: list[TableName] = []
    for schema, name in tables:
        out.append((schema, name))
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_partition_tree(%s::regclass) t JOIN pg_class c ON c.oid = t.relid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.level > 0 ORDER BY t.level, 1, 2",
            (sql.Identifier(schema, name).as_string(conn),)).fetchall()
        out += [(r[0], r[1]) for r in rows]
    return list(dict.fromkeys(out))


def frozen_tables(conn: psycopg.Connection[Any]) -> list[TableName]:
    """Every table that carries the pg2edge freeze trigger."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname = %s AND NOT t.tgisinternal "
        "ORDER BY 1, 2", (TRIGGER_NAME,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def _function_exists(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE n.nspname = %s AND p.proname = %s AND p.pronargs = 0",
                        (FUNCTION_SCHEMA, FUNCTION_NAME)).fetchone() is not None


def _create_function(conn: psycopg.Connection[Any]) -> SourceChange:
    create = sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
        _function(), sql.Literal(_FUNCTION_BODY))
    return SourceChange(description=f"create function {FUNCTION_SCHEMA}.{FUNCTION_NAME}() (refuses writes)",
                        sql=create.as_string(conn),
                        undo_sql=sql.SQL("DROP FUNCTION IF EXISTS {}()").format(_function()).as_string(conn))


def _trigger(conn: psycopg.Connection[Any], table: TableName) -> SourceChange:
    ident = sql.Identifier(*table)
    create = sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                     "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
        sql.Identifier(TRIGGER_NAME), ident, _function())
    drop = sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TRIGGER_NAME), ident)
    return SourceChange(description=f"freeze table {_qualified(table)} (writes refused by trigger {TRIGGER_NAME})",
                        sql=create.as_string(conn), undo_sql=drop.as_string(conn))


def plan_freeze(conn: psycopg.Connection[Any], tables: Sequence[str | TableName]) -> list[SourceChange]:
    """The source changes that freeze ``tables``; empty when they are all frozen already."""
    wanted = parse_tables(tables)
    if not wanted:
        raise FreezeError("no tables to freeze")
    _check_exist(conn, wanted)
    wanted = _with_partitions(conn, wanted)
    frozen = set(frozen_tables(conn))
    changes = [] if _function_exists(conn) else [_create_function(conn)]
    changes += [_trigger(conn, t) for t in wanted if t not in frozen]
    return changes


def plan_unfreeze(conn: psycopg.Connection[Any], tables: Sequence[str | TableName] | None = None
                  ) -> list[SourceChange]:
    """The source changes that unfreeze ``tables`` (default: every frozen table); empty when none is frozen.

    The function is dropped too once no frozen table is left.
    """
    frozen = frozen_tables(conn)
    wanted = _unfreeze_targets(frozen, tables)
    changes = []
    for table in wanted:
        freeze = _trigger(conn, table)
        changes.append(SourceChange(description=f"unfreeze table {_qualified(table)} (writes allowed again)",
                                    sql=freeze.undo_sql, undo_sql=freeze.sql))
    if _function_exists(conn) and not set(frozen) - set(wanted):
        create = _create_function(conn)
        changes.append(SourceChange(description=f"drop function {FUNCTION_SCHEMA}.{FUNCTION_NAME}()",
                                    sql=create.undo_sql, undo_sql=create.sql))
    return changes


def _unfreeze_targets(frozen: list[TableName], tables: Sequence[str | TableName] | None) -> list[TableName]:
    return frozen if tables is None else [t for t in parse_tables(tables) if t in set(frozen)]


def _run(dsn: str, changes: Sequence[SourceChange]) -> str:
    """Apply ``changes`` in one transaction (bounded lock wait); returns the WAL LSN right after commit."""
    try:
        with connect(dsn) as conn:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                for change in changes:
                    log.warning("changing the source at %s: %s", describe(dsn), change.description)
                    conn.execute(change.sql.encode())
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    except psycopg.errors.LockNotAvailable as exc:
        raise FreezeError(f"a table stayed locked by another session for {LOCK_TIMEOUT}; "
                          f"nothing was changed, retry when its long transaction ends ({exc.diag.message_primary})"
                          ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise FreezeError(f"the source role may not change these tables ({exc.diag.message_primary}); "
                          "freezing needs the table owner or a superuser") from exc
    assert row is not None
    return str(row[0])


def freeze(dsn: str, tables: Sequence[str | TableName], *, replica: str | Path | None = None) -> FreezeResult:
    """Make ``tables`` read-only on the source; records the freeze and its LSN in ``replica`` when given."""
    with connect(dsn) as conn:
        changes = plan_freeze(conn, tables)
        current_lsn = str(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
    names = [_qualified(t) for t in parse_tables(tables)]
    if not changes:
        log.info("tables %s are frozen already; nothing changed", ", ".join(names))
        record = _read_record(replica) if replica is not None else None
        if replica is not None and not (record and record.get("frozen") and set(names) <= set(record["tables"])):
            _record(replica, names, [], current_lsn, frozen=True)  # frozen earlier without this replica
        return FreezeResult(tables=names)
    lsn = _run(dsn, changes)
    if replica is not None:
        _record(replica, names, changes, lsn, frozen=True)
    return FreezeResult(tables=names, changes=changes, lsn=lsn)


def unfreeze(dsn: str, *, replica: str | Path | None = None,
             tables: Sequence[str | TableName] | None = None) -> FreezeResult:
    """Allow writes again on ``tables`` (default: the replica's frozen tables, else every frozen table)."""
    if tables is None and replica is not None:
        record = _read_record(replica)
        tables = record.get("tables") if record else None
    with connect(dsn) as conn:
        names = [_qualified(t) for t in _unfreeze_targets(frozen_tables(conn), tables)]
        changes = plan_unfreeze(conn, tables)
    if not changes:
        return FreezeResult(tables=names)
    lsn = _run(dsn, changes)
    if replica is not None:
        _record(replica, names, changes, lsn, frozen=False)
    return FreezeResult(tables=names, changes=changes, lsn=lsn)


def published_tables(dsn: str, *, replica: str | Path) -> list[TableName]:
    """The tables the replica's publication publishes (the default set to freeze)."""

    if not Path(replica).is_file():
        raise FreezeError(f"replica file {replica} does not exist; pass --tables or the replica's --target")
    db = open_replica(replica)
    try:
        stream = state.read_stream(db)
    finally:
        db.close()
    if stream is None:
        raise FreezeError(f"replica {replica} records no publication (never synced, or torn down); pass --tables")
    with connect(dsn) as conn:
        rows = conn.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s "
                            "ORDER BY 1, 2", (stream.publication,)).fetchall()
    if not rows:
        raise FreezeError(f"publication {stream.publication} of replica {replica} publishes no table on the "
                          "source (dropped?); pass --tables")
    return [(r[0], r[1]) for r in rows]


def _read_record(replica: str | Path) -> dict[str, Any] | None:

    db = open_replica(replica)
    try:
        return state.read_record(db, CUTOVER_SCOPE, FREEZE_RECORD)
    finally:
        db.close()


def _record(replica: str | Path, tables: list[str], changes: Sequence[SourceChange], lsn: str,
            *, frozen: bool) -> None:
    """Keep ``cutover/freeze``: the frozen tables and the LSN after the last freeze (drain target)."""

    now = datetime.now(UTC).isoformat(timespec="seconds")
    db = open_replica(replica)
    try:
        with db:
            old = state.read_record(db, CUTOVER_SCOPE, FREEZE_RECORD) or {}
            current = list(old.get("tables", [])) if old.get("frozen") else []
            if frozen:
                current = list(dict.fromkeys(current + tables))
                value = {"frozen": True, "tables": current, "lsn": lsn, "lsn_int": parse_lsn(lsn),
                         "frozen_at": now, "changes": [asdict(c) for c in changes]}
            else:
                current = [t for t in current if t not in tables]
                value = {**old, "frozen": bool(current), "tables": current, "unfrozen_at": now,
                         "unfreeze_lsn": lsn, "unfreeze_changes": [asdict(c) for c in changes]}
            state.write_record(db, CUTOVER_SCOPE, FREEZE_RECORD, value)
    finally:
        db.close()


__all__ = ["FreezeResult", "freeze", "frozen_tables", "published_tables", "parse_tables", "plan_freeze",
           "plan_unfreeze", "unfreeze"]
