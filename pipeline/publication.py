"""Which tables to replicate, and the publication (and replica identities) on the source.

Only tables with a usable replica identity are published: a table without a
primary key under REPLICA IDENTITY DEFAULT (or with NOTHING) would make its
UPDATEs and DELETEs fail on the source once published, so it is refused by
name unless the operator allows REPLICA IDENTITY FULL for it.

Every change on the source is planned first (``plan_publication`` returns
``SourceChange`` records with their SQL and undo SQL), logged when run, and
recorded in the replica's state table so ``teardown`` can undo it.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge.dsn import control, describe
from pg2edge.errors import ConfigError, PrivilegeError, SourceError
from pg2edge.pipeline import state
from pg2edge.pipeline.errors import ReplicaIdentityError
from pg2edge.pipeline.sourcechanges import SourceChange, apply_changes

log = logging.getLogger(__name__)

NOT_SELECTED = "not selected by --tables"


@dataclass(frozen=True, slots=True)
class TableInfo:
    schema: str
    name: str
    partitioned: bool
    partition_of: str | None
    unlogged: bool
    has_pk: bool
    replica_identity: str  # d default, n nothing, f full, i index

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def problem(self) -> str | None:
        """Why this table cannot be replicated as it is, or None."""
        if self.partition_of:
            return f"partition of {self.partition_of} (published through its root)"
        if self.unlogged:
            return "unlogged table (not written to WAL, cannot be replicated)"
        if self.replica_identity == "n":
            return "REPLICA IDENTITY NOTHING (updates and deletes cannot be replicated)"
        if self.replica_identity == "d" and not self.has_pk:
            return "no primary key and REPLICA IDENTITY DEFAULT (allow REPLICA IDENTITY FULL to include it)"
        return None


@dataclass(frozen=True, slots=True)
class Selection:
    tables: tuple[TableInfo, ...]
    needs_full: tuple[TableInfo, ...]  # included, but REPLICA IDENTITY FULL must be set
    skipped: tuple[tuple[str, str], ...]  # (schema.table, reason)


_TABLES = """
SELECT n.nspname, c.relname, c.relkind = 'p', parent.nspname || '.' || pc.relname,
       c.relpersistence = 'u',
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       c.relreplident
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid AND c.relispartition
LEFT JOIN pg_class pc ON pc.oid = inh.inhparent
LEFT JOIN pg_namespace parent ON parent.oid = pc.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND n.nspname = %s
ORDER BY c.relname
"""


def list_tables(conn: psycopg.Connection[Any], *, schema: str = "public") -> list[TableInfo]:
    rows = conn.execute(_TABLES, (schema,)).fetchall()
    out = []
    for nsp, rel, partitioned, parent, unlogged, has_pk, ident in rows:
        out.append(TableInfo(schema=nsp, name=rel, partitioned=bool(partitioned), partition_of=parent,
                             unlogged=bool(unlogged), has_pk=bool(has_pk), replica_identity=str(ident)))
    return out


def _patterns(tables: str | Sequence[str] | None) -> list[str]:
    if tables is None:
        return []
    items = tables.split(",") if isinstance(tables, str) else list(tables)
    return [p.strip() for p in items if p.strip()]


def resolve_tables(conn: psycopg.Connection[Any], tables: str | Sequence[str] | None = None, *,
                   schema: str = "public", allow_replica_identity_full: bool = False) -> Selection:
    """Resolve ``'orders,product*'`` (or every table of ``schema`` when None) to a Selection.

    A table named by a pattern that cannot be replicated raises
    ``ReplicaIdentityError`` (all such tables named); with the default
    selection it is listed in ``skipped`` with the reason.
    """
    infos = list_tables(conn, schema=schema)
    patterns = _patterns(tables)
    explicit = bool(patterns)
    if explicit:
        chosen: list[TableInfo] = []
        for pat in patterns:
            matches = [t for t in infos if fnmatch.fnmatchcase(t.qualified if "." in pat else t.name, pat)]
            if not matches:
                raise ConfigError(f"--tables pattern {pat!r} matches no table in schema {schema!r}")
            chosen += [t for t in matches if t not in chosen]
        others = [t for t in infos if t not in chosen]
    else:
        chosen, others = infos, []
    selected: list[TableInfo] = []
    needs_full: list[TableInfo] = []
    skipped: list[tuple[str, str]] = [(t.qualified, NOT_SELECTED) for t in others]
    refused: list[str] = []
    for t in chosen:
        reason = t.problem()
        if reason is None:
            selected.append(t)
        elif t.replica_identity == "d" and not t.has_pk and not t.partition_of and not t.unlogged \
                and allow_replica_identity_full:
            selected.append(t)
            needs_full.append(t)
        elif explicit and not t.partition_of:
            refused.append(f"{t.qualified}: {reason}")
        else:
            skipped.append((t.qualified, reason))
    if refused:
        raise ReplicaIdentityError("cannot replicate " + "; ".join(refused))
    return Selection(tables=tuple(selected), needs_full=tuple(needs_full), skipped=tuple(skipped))


def _render(conn: psycopg.Connection[Any], query: sql.Composable) -> str:
    return query.as_string(conn)


def plan_publication(conn: psycopg.Connection[Any], selection: Selection, *, publication: str) -> list[SourceChange]:
    """The source changes (with undo SQL) that publish ``selection`` as ``publication``."""
    if not selection.tables:
        raise SourceError("no table can be replicated: " +
                          "; ".join(f"{t}: {r}" for t, r in selection.skipped) if selection.skipped
                          else "no table found to replicate")
    changes = []
    for t in selection.needs_full:
        ident = sql.Identifier(t.schema, t.name)
        changes.append(SourceChange(
            description=f"set REPLICA IDENTITY FULL on {t.qualified} (it has no primary key)",
            sql=_render(conn, sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident)),
            undo_sql=_render(conn, sql.SQL("ALTER TABLE IF EXISTS {} REPLICA IDENTITY DEFAULT").format(ident))))
    tables = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in selection.tables)
    via_root = any(t.partitioned for t in selection.tables)
    create = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(publication), tables)
    if via_root:
        create += sql.SQL(" WITH (publish_via_partition_root = true)")
    changes.append(SourceChange(
        description=f"create publication {publication} for {len(selection.tables)} table(s): "
                    + ", ".join(t.qualified for t in selection.tables),
        sql=_render(conn, create),
        undo_sql=_render(conn, sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))))
    return changes


def slot_change(conn: psycopg.Connection[Any], slot: str) -> SourceChange:
    """The record of a replication slot pg2edge created (its undo drops it if it still exists)."""
    undo = sql.SQL("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                   "WHERE slot_name = {}").format(sql.Literal(slot))
    return SourceChange(description=f"create logical replication slot {slot} (pgoutput)",
                        undo_sql=_render(conn, undo))


@dataclass(frozen=True, slots=True)
class PublicationResult:
    selection: Selection
    changes: tuple[SourceChange, ...]


def setup_publication(dsn: str, *, publication: str, tables: str | Sequence[str] | None = None,
                      schema: str = "public", allow_replica_identity_full: bool = False,
                      replica: apsw.Connection | None = None, dry_run: bool = False) -> PublicationResult:
    """Resolve tables, create the publication (and FULL identities), record the changes.

    With ``dry_run`` nothing is changed and the planned SQL is returned.
    """
    with control(dsn) as conn:
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        if exists:
            raise SourceError(f"publication {publication!r} already exists at {describe(dsn)}; "
                              "reuse its stream or run teardown first")
        selection = resolve_tables(conn, tables, schema=schema,
                                   allow_replica_identity_full=allow_replica_identity_full)
        changes = plan_publication(conn, selection, publication=publication)
    for table, reason in selection.skipped:
        level = logging.INFO if reason == NOT_SELECTED else logging.WARNING
        log.log(level, "not replicating %s: %s", table, reason)
    if dry_run:
        return PublicationResult(selection, tuple(changes))
    try:
        apply_changes(dsn, changes)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PrivilegeError(f"creating publication {publication!r} at {describe(dsn)} needs CREATE on the "
                             f"database and ownership of the tables: {exc}") from None
    if replica is not None:
        with replica:
            state.ensure_state_table(replica)
            state.record_source_changes(replica, changes)
    return PublicationResult(selection, tuple(changes))
