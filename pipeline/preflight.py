"""Prerequisites of a snapshot or sync, all checked before anything changes on the source.

A failed check changes nothing on the source (no publication, no slot, no
keeper) and creates no file. In order:

1. the target (:mod:`pipeline.targetfile`): a file path (not an unknown URL),
   its folder exists and is writable, there is free space, and the file is new,
   empty or a pg2edge replica (a corrupt file or another application's database
   is refused);
2. the source: reachable, ``wal_level = logical``, the role may replicate
   (REPLICATION or superuser), a free replication slot;
3. the replica belongs to this source (cluster system identifier and database);
4. for a new replica: the ``--tables`` selection resolves, the role may create
   the publication (CREATE on the database) and owns and may read every
   selected table;
5. for a tenant split: every tenant id on the source maps to a file
   (not empty, at most ``MAX_ID_BYTES``).

Each failure is a :class:`~pg2edge.errors.Pg2EdgeError` whose message names the
object (the path, ``host/port/database``, the role, the table).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge import dsn as dsnlib
from pg2edge.errors import PrivilegeError, SourceError
from pg2edge.pipeline import state
from pg2edge.pipeline.targetfile import TargetInfo, check_replica_target, sqlite_error

log = logging.getLogger(__name__)


class WalLevelError(SourceError):
    """The source's wal_level is not ``logical``: logical decoding is off."""


@dataclass(frozen=True)
class SourceFacts:
    """What the checks read from the source (``analyze`` reports ``wal_level`` too)."""

    wal_level: str
    role: str
    superuser: bool
    replication: bool
    can_create: bool  # CREATE on the database (CREATE PUBLICATION needs it)
    max_slots: int
    used_slots: int
    database: str


_FACTS = """
SELECT current_setting('wal_level'), current_user, r.rolsuper, r.rolreplication,
       has_database_privilege(current_database(), 'CREATE'),
       current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots)::int, current_database()
FROM pg_roles r WHERE r.rolname = current_user
"""


def source_facts(conn: psycopg.Connection[Any]) -> SourceFacts:
    row = conn.execute(_FACTS).fetchone()
    assert row is not None
    return SourceFacts(wal_level=str(row[0]), role=str(row[1]), superuser=bool(row[2]), replication=bool(row[3]),
                       can_create=bool(row[4]), max_slots=int(row[5]), used_slots=int(row[6]), database=str(row[7]))


def check_source(dsn: str, *, new_slot: bool, new_publication: bool) -> SourceFacts:
    """Reachable, wal_level=logical, may replicate, a slot is free, may create the publication."""
    where = dsnlib.describe(dsn)
    with dsnlib.control(dsn) as conn:
        facts = source_facts(conn)
    problem = dsnlib.wal_level_problem(facts.wal_level)
    if problem:
        raise WalLevelError(f"PostgreSQL at {where}: {problem}")
    if not (facts.superuser or facts.replication):
        raise PrivilegeError(f"role {facts.role!r} at {where} lacks the REPLICATION attribute "
                             f"(ALTER ROLE {facts.role} REPLICATION)")
    if new_slot and facts.used_slots >= facts.max_slots:
        raise SourceError(f"PostgreSQL at {where} has no free replication slot ({facts.used_slots} of "
                          f"max_replication_slots = {facts.max_slots} in use)")
    if new_publication and not (facts.superuser or facts.can_create):
        raise PrivilegeError(f"role {facts.role!r} at {where} cannot create a publication: it needs CREATE on "
                             f"database {facts.database!r} (GRANT CREATE ON DATABASE ...)")
    return facts


def check_tables(dsn: str, *, tables: str | Sequence[str] | None, allow_replica_identity_full: bool,
                 schema: str = "public") -> list[tuple[str, str]]:
    """The selection resolves (``--tables`` matches, replica identities usable); the role owns and reads it."""
    from pg2edge.pipeline.publication import resolve_tables

    with dsnlib.control(dsn) as conn:
        selection = resolve_tables(conn, tables, schema=schema,
                                   allow_replica_identity_full=allow_replica_identity_full)
        if not selection.tables:
            from pg2edge.pipeline.publication import plan_publication

            plan_publication(conn, selection, publication="preflight")  # raises SourceError naming why
        names = [t.name for t in selection.tables]
        rows = conn.execute(
            "SELECT c.relname, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT'), "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s)", (schema, names)).fetchall()
        role = conn.info.user
    not_owned = sorted(f"{schema}.{r[0]}" for r in rows if not (r[3] or r[1]))
    not_readable = sorted(f"{schema}.{r[0]}" for r in rows if not (r[3] or r[2]))
    where = dsnlib.describe(dsn)
    if not_owned:
        raise PrivilegeError(f"role {role!r} at {where} does not own {', '.join(not_owned)}: publishing a table "
                             "needs its owner (or a superuser)")
    if not_readable:
        raise PrivilegeError(f"role {role!r} at {where} cannot SELECT {', '.join(not_readable)}")
    return [(t.schema, t.name) for t in selection.tables]


def check_identity(dsn: str, info: TargetInfo) -> state.SourceIdentity:
    """The source's identity; StateError when the replica at ``info`` was filled from another source."""
    from pg2edge.pipeline.sources.replication import identify_system

    ident = identify_system(dsn)
    identity = state.SourceIdentity(system_identifier=ident.system_identifier, database=ident.database)
    if info.is_replica:
        try:
            conn = apsw.Connection(str(info.path), flags=apsw.SQLITE_OPEN_READONLY)
        except apsw.Error as exc:
            raise sqlite_error(info.path, exc) from None
        try:
            state.check_source(conn, identity)
        finally:
            conn.close()
    return identity


def _stream_recorded(info: TargetInfo) -> bool:
    if not info.is_replica:
        return False
    conn = apsw.Connection(str(info.path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return state.read_stream(conn) is not None
    except apsw.Error as exc:
        raise sqlite_error(info.path, exc) from None
    finally:
        conn.close()


@dataclass(frozen=True)
class Preflight:
    target: TargetInfo
    facts: SourceFacts
    identity: state.SourceIdentity
    tables: tuple[tuple[str, str], ...]  # the selection of a new replica (empty when it has a stream)


def check_snapshot(*, dsn: str, target: str | Path, tables: str | Sequence[str] | None = None,
                   allow_replica_identity_full: bool = False, create_dirs: bool = False) -> Preflight:
    """Everything ``run_snapshot`` needs, checked before it opens the file or changes the source."""
    info = check_replica_target(target, create_dirs=create_dirs)
    new = not _stream_recorded(info)
    facts = check_source(dsn, new_slot=new, new_publication=new)
    identity = check_identity(dsn, info)
    selected = check_tables(dsn, tables=tables, allow_replica_identity_full=allow_replica_identity_full) \
        if new else []
    if selected:
        _warn_if_short_of_space(dsn, info.path, selected)
    return Preflight(target=info, facts=facts, identity=identity, tables=tuple(selected))


def check_snapshot_remote(*, dsn: str, db: Any, tables: str | Sequence[str] | None = None,
                          allow_replica_identity_full: bool = False) -> state.SourceIdentity:
    """``check_snapshot`` for a remote replica (``db``: its RemoteConnection): the source checks, and the
    remote's recorded source is this one. Returns the source's identity."""
    from pg2edge.pipeline.sources.replication import identify_system

    new = state.read_stream(db) is None
    check_source(dsn, new_slot=new, new_publication=new)
    ident = identify_system(dsn)
    identity = state.SourceIdentity(system_identifier=ident.system_identifier, database=ident.database)
    state.check_source(db, identity)
    if new:
        check_tables(dsn, tables=tables, allow_replica_identity_full=allow_replica_identity_full)
    return identity


def _warn_if_short_of_space(dsn: str, path: Path, tables: Sequence[tuple[str, str]]) -> None:
    """A warning (not a refusal: SQLite often needs less) when the source tables outsize the free space."""
    import os

    with dsnlib.control(dsn) as conn:
        row = conn.execute("SELECT coalesce(sum(pg_table_size(format('%%I.%%I', s, t)::regclass)), 0)::bigint "
                           "FROM unnest(%s::text[], %s::text[]) AS x(s, t)",
                           ([s for s, _ in tables], [t for _, t in tables])).fetchone()
    need = int(row[0]) if row else 0
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    vfs = os.statvfs(folder)
    free = vfs.f_bavail * vfs.f_frsize
    if need > free:
        log.warning("target %s: %d bytes free on its file system, the selected tables take %d bytes on the "
                    "source (the copy may fill the disk)", path, free, need)


def has_column(conn: Any, schema: str, table: str, column: str) -> bool:
    """Whether ``schema.table`` has a live column ``column`` (a catalog read on the source)."""
    return conn.execute(
        "SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped", (schema, table, column)).fetchone() is not None


def check_tenant_ids(dsn: str, tables: Sequence[tuple[str, str]], *, column: str) -> None:
    """Every value of the tenant ``column`` in ``tables`` is a usable tenant id (TenantIdError names one)."""
    from pg2edge.pipeline.tenants.errors import TenantIdError
    from pg2edge.pipeline.tenants.ids import MAX_ID_BYTES

    with dsnlib.control(dsn) as conn:
        for schema, table in tables:
            if not has_column(conn, schema, table, column):
                continue
            col = sql.Identifier(column)
            query = sql.SQL(
                "SELECT {c}::text, count(*) FROM {t} WHERE {c} IS NULL OR {c}::text = '' "
                "OR octet_length({c}::text) > {n} GROUP BY 1 ORDER BY 2 DESC LIMIT 1").format(
                c=col, t=sql.Identifier(schema, table), n=sql.Literal(MAX_ID_BYTES))
            row = conn.execute(query).fetchone()
            if row is None:
                continue
            value, count = row
            if not value:
                raise TenantIdError(f"empty tenant id: {count} row(s) of {schema}.{table} have "
                                    f"{'NULL' if value is None else 'an empty'} {column}; every row needs a "
                                    "tenant to be routed (fix the rows, then rerun)")
            raise TenantIdError(f"tenant id {value[:40]!r}... of {schema}.{table} ({count} row(s)) is longer "
                                f"than {MAX_ID_BYTES} bytes (fix the rows, then rerun)")
