"""Follow one source schema change on a replica, at its position, through the schema translator.

Every sink runs :func:`follow`: the SQLite file sink on its batch transaction;
the libSQL and D1 sinks on an in-memory shadow of their schema whose writes go
into their batch (:mod:`pg2edge.pipeline.schema_sql`). What a change describes
and the replica's baselines: :mod:`pg2edge.pipeline.schema_model`; fallback
mode (Relation messages, catalog checks): :mod:`pg2edge.pipeline.schema_fallback`.

A :class:`~pg2edge.pipeline.events.SchemaChange` describes each affected table
*after* the change (the translator's own catalog rows). The replica table is
brought to exactly what the translator plans for that description
(:func:`pg2edge.translators.ddl.plan_table`, one set of type rules):

* RENAME TABLE / RENAME COLUMN: ``ALTER TABLE ... RENAME`` (attribute numbers
  tell a rename from a drop + add; the replica keeps a baseline of them);
* any other difference of the CREATE TABLE (ADD/DROP COLUMN, NOT NULL,
  DEFAULT, CHECK/UNIQUE constraints, a type whose SQLite declaration changed):
  SQLite's 12-step rebuild (new table, copy, drop, rename, indexes) inside the
  batch's transaction, so it commits with the position;
* a column added with a constant default: existing rows get the value
  PostgreSQL gives them (``attmissingval``, through the codec);
* a type change the codec encodes identically (integer widths, varchar/text,
  a longer varchar, an unconstrained numeric): values kept as they are;
* a change whose values PostgreSQL computed per row (a volatile default, an
  identity/serial column added, a type change with ``USING`` or between types
  the codec encodes differently): the structure follows and the table is
  re-copied from a fresh snapshot (:mod:`pg2edge.pipeline.resync`);
* CREATE/DROP INDEX: the translated indexes of the table; an index SQLite
  cannot hold (gin, gist, ...) is a named finding;
* DROP TABLE: the replica table is dropped.

Anything that cannot be followed exactly is a named finding and pauses the
table (``TableState.paused``), never an exception out of the stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.errors import Pg2EdgeError
from pg2edge.pipeline import state
from pg2edge.pipeline.events import ChangeEvent, SchemaChange
from pg2edge.pipeline.schema_model import (
    BASELINE_SCOPE,
    Described,
    baseline_record,
    describe,
    read_baselines,
    write_baseline,
)
from pg2edge.translators.codec import row_codec
from pg2edge.translators.ddl import plan_table
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.naming import sqlite_index_name, sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Column, Table

if TYPE_CHECKING:
    from pg2edge.pipeline.sinks.statements import TableMapping

log = logging.getLogger(__name__)

FALLBACK_EVENT = "relation"  # a SchemaChange synthesized from a Relation message and a catalog read
REBUILD_PREFIX = "_pg2edge_new_"

_INTS = {20, 21, 23}
_TEXTS = {25, 1043}  # text, varchar
_NUMERIC = 1700


@dataclass
class Followed:
    """What following one change did to one table."""

    key: tuple[str, str]  # source (schema, table) before the change
    new_key: tuple[str, str] | None = None  # after (None: dropped)
    target: str = ""
    table: Table | None = None
    findings: list[Finding] = field(default_factory=list)
    resync: list[str] = field(default_factory=list)  # why the table must be re-copied
    pause: str | None = None


# -- type compatibility under the codec -------------------------------------------------------------------
def same_encoding(old_oid: int, old_typmod: int, col: Column) -> bool:
    """True when PostgreSQL's implicit conversion keeps every value's codec encoding (no USING)."""
    new_oid, new_mod = col.type_oid, col.typmod
    if old_oid == new_oid and old_typmod == new_mod:
        return True
    if old_oid in _INTS and new_oid in _INTS:
        return True
    if old_oid in _TEXTS and new_oid in _TEXTS:
        return True  # a shorter varchar is checked by PostgreSQL (assignment cast errors, never truncates)
    return old_oid == _NUMERIC and new_oid == _NUMERIC and new_mod == -1


def _uses_using(statement: str) -> bool:
    return re.search(r"\bUSING\b", statement, re.IGNORECASE) is not None


# -- reading the replica ------------------------------------------------------------------------------------
def _table_sql(conn: apsw.Connection, name: str) -> str | None:
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _columns(conn: apsw.Connection, name: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(f"PRAGMA table_xinfo({quote_ident(name)})").fetchall()]


def _indexes(conn: apsw.Connection, table: str) -> dict[str, str]:
    return {str(n): str(s) for n, s in conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))}


_INDEX_NAME = re.compile(r'^CREATE (?:UNIQUE )?INDEX "((?:[^"]|"")*)"')


def _index_name(statement: str) -> str:
    m = _INDEX_NAME.match(statement)
    assert m is not None, statement
    return m.group(1).replace('""', '"')


# -- following a change ----------------------------------------------------------------------------------
def follow_table(conn: apsw.Connection, *, key: tuple[str, str], target: str, described: Described,
                 baseline: Mapping[str, Any] | None, statement: str, options: TranslateConfig,
                 translated: set[str], statement_known: bool = True) -> Followed:
    """Bring replica table ``target`` (source ``key``) to the translation of ``described``, inside the
    caller's transaction. Raises apsw.Error when SQLite refuses (the caller pauses the table)."""
    table = described.table
    out = Followed(key=key, new_key=(table.schema, table.name), table=table)
    obj = table.qualified
    create, index_sql, findings = plan_table(table, options=options, translated=translated)
    out.findings += [f for f in findings if f.code in ("index-method", "index-dropped", "generated-dropped")]
    new_target = sqlite_table_name(table.schema, table.name)
    if new_target != target:
        conn.execute(f"ALTER TABLE {quote_ident(target)} RENAME TO {quote_ident(new_target)}")
        out.findings.append(Finding(Level.INFO, "table-renamed", obj, f"renamed from {key[0]}.{key[1]}"))
    out.target = new_target
    codec = row_codec(table, options=options)
    present = {str(r[1]) for r in _columns(conn, new_target)}
    base: dict[int, list[Any]] | None = (
        {int(n): list(v) for n, v in baseline.get("attnums", {}).items()} if baseline else None)
    source_of: dict[str, tuple[str, Any]] = {}
    renames: list[tuple[str, str]] = []
    for num, (name, has_missing, missing) in sorted(described.attrs.items()):
        if name not in codec.columns:
            continue
        col = table.column(name)
        old: list[Any] | None = (base.get(num) if base is not None
                                 else [name, col.type_oid, col.typmod] if name in present else None)
        if old is not None and old[0] in present:
            if old[0] != name:
                renames.append((str(old[0]), name))
                out.findings.append(Finding(Level.INFO, "column-renamed", f"{obj}.{name}", f"renamed from {old[0]}"))
            if (int(old[1]), int(old[2])) != (col.type_oid, col.typmod):
                if not same_encoding(int(old[1]), int(old[2]), col):
                    out.resync.append(f"{name}: type changed to {col.pg_type} (the codec encodes it differently)")
                elif not statement_known:
                    out.resync.append(f"{name}: type changed to {col.pg_type} (fallback mode cannot see a USING)")
                elif _uses_using(statement):
                    out.resync.append(f"{name}: type changed to {col.pg_type} with USING (values recomputed)")
            source_of[name] = ("col", name)
        elif has_missing:
            source_of[name] = ("value", codec.encode_text(name, missing))
            out.findings.append(Finding(Level.INFO, "column-added", f"{obj}.{name}",
                                        f"added; existing rows get {missing!r}"))
        else:
            if col.default is not None or col.identity or col.generated:
                out.resync.append(f"{name}: added with a per-row value ({col.default or col.identity or col.generated})")
            elif base is None and (present - set(codec.columns)):
                raise _Ambiguous(f"{obj}.{name}: a new column while {sorted(present - set(codec.columns))} "
                                 "disappeared, and no baseline tells a rename from a drop")
            source_of[name] = ("null", None)
            out.findings.append(Finding(Level.INFO, "column-added", f"{obj}.{name}", "added"))
    for gone in sorted(present - {o for o, _ in renames} - set(codec.columns)):
        out.findings.append(Finding(Level.INFO, "column-dropped", f"{obj}.{gone}", "dropped"))
    _rename_columns(conn, new_target, renames)
    if _table_sql(conn, new_target) != create:
        rebuild(conn, new_target, create, source_of)
        existing: dict[str, str] = {}
    else:
        existing = _indexes(conn, new_target)
    wanted = {_index_name(s): s for s in index_sql}
    for name, sql in existing.items():
        if wanted.get(name) != sql:
            conn.execute(f"DROP INDEX {quote_ident(name)}")
    for name, sql in wanted.items():
        if existing.get(name) != sql:
            conn.execute(sql)
    return out


class _Ambiguous(Exception):
    """The change cannot be followed exactly (named, the table pauses)."""


def _rename_columns(conn: apsw.Connection, table: str, renames: list[tuple[str, str]]) -> None:
    """RENAME COLUMN each (old, new); through temporary names when the renames swap names."""
    if not renames:
        return
    t = quote_ident(table)
    staged = []
    for i, (old, new) in enumerate(renames):
        tmp = f"_pg2edge_rename_{i}"
        conn.execute(f"ALTER TABLE {t} RENAME COLUMN {quote_ident(old)} TO {quote_ident(tmp)}")
        staged.append((tmp, new))
    for tmp, new in staged:
        conn.execute(f"ALTER TABLE {t} RENAME COLUMN {quote_ident(tmp)} TO {quote_ident(new)}")


def rebuild(conn: apsw.Connection, table: str, create: str, source_of: Mapping[str, tuple[str, Any]]) -> None:
    """SQLite's 12-step table change inside the caller's transaction: create the new shape under a
    temporary name, copy the rows (kept columns, constants for added ones), drop, rename. Indexes are
    recreated by the caller."""
    prefix = f"CREATE TABLE {quote_ident(table)} ("
    assert create.startswith(prefix), create[:80]
    tmp = REBUILD_PREFIX + table
    conn.execute(f"DROP TABLE IF EXISTS {quote_ident(tmp)}")
    conn.execute(f"CREATE TABLE {quote_ident(tmp)} (" + create[len(prefix):])
    new_cols = [str(r[1]) for r in _columns(conn, tmp) if int(r[6]) == 0]  # not generated
    old_cols = {str(r[1]) for r in _columns(conn, table)}
    cols, exprs, params = [], [], []
    for name in new_cols:
        how, value = source_of.get(name, ("col", name))
        if how == "col" and name in old_cols:
            cols.append(name)
            exprs.append(quote_ident(name))
        elif how == "value":
            cols.append(name)
            exprs.append("?")
            params.append(value)
    if cols:
        conn.execute(f"INSERT INTO {quote_ident(tmp)} ({', '.join(map(quote_ident, cols))}) "
                     f"SELECT {', '.join(exprs)} FROM {quote_ident(table)}", tuple(params))
    conn.execute(f"DROP TABLE {quote_ident(table)}")
    conn.execute(f"ALTER TABLE {quote_ident(tmp)} RENAME TO {quote_ident(table)}")


def drop_index(conn: apsw.Connection, schema: str, name: str) -> bool:
    """DROP INDEX of a source index that was translated; False when the replica has no such index."""
    sqlite_name = sqlite_index_name(schema, name)
    row = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ? AND sql IS NOT NULL",
                       (sqlite_name,)).fetchone()
    if row is None:
        return False
    conn.execute(f"DROP INDEX {quote_ident(sqlite_name)}")
    return True


def relation_columns(table: Table) -> list[list[Any]]:
    """The drift record of ``table`` as pgoutput describes it (no generated columns)."""
    return [[c.name, c.type_oid, c.typmod] for c in table.columns if c.generated is None]


def paused(ts: state.TableState, reason: str, lsn: int) -> state.TableState:
    return replace(ts, paused=True, pause_reason=reason, paused_at_lsn=lsn)




def mapping_key(mappings: Mapping[tuple[str, str], TableMapping], baselines: Mapping[str, Any],
                described: Described) -> tuple[str, str] | None:
    """The mapped source table a description is about: by oid through the baseline, else by name."""
    for qualified, record in baselines.items():
        if int(record.get("oid", -1)) == described.oid:
            schema, _, name = qualified.partition(".")
            if (schema, name) in mappings:
                return (schema, name)
    key = (described.table.schema, described.table.name)
    return key if key in mappings else None


# -- one change on an applier (the SQLite sink) ----------------------------------------------------------
class Follower(Protocol):
    """What :func:`follow` needs of a sink's applier."""

    conn: apsw.Connection
    mappings: dict[tuple[str, str], TableMapping]
    options: TranslateConfig

    def forget_tables(self) -> None: ...


def follow(applier: Follower, change: SchemaChange, *, commit_lsn: int,
           tables: dict[str, state.TableState], can_recopy: bool = True) -> list[Finding]:
    """Apply ``change`` to the replica inside the applier's open transaction; returns the findings.

    Each affected table is followed inside a SAVEPOINT: when SQLite refuses, or the change cannot be
    followed exactly, that table is paused with a named finding and the stream goes on. ``can_recopy``
    False (a remote target: libSQL, D1, which pipeline.resync cannot copy into): a change that needs its
    table re-copied is followed in structure and the table paused by name instead."""
    from pg2edge.pipeline import resync

    conn = applier.conn
    findings: list[Finding] = []
    what = f"{change.tag} ({_short(change.statement)})"
    if change.error:
        objs = [str(c.get("identity")) for c in change.commands] or [change.tag]
        for obj in objs:
            findings.append(Finding(Level.ERROR, "ddl-not-described", obj,
                                    f"{what}: the source could not describe it: {change.error}"))
            key = _key_of(obj, applier.mappings)
            if key is not None:
                _pause(conn, tables, key, f"{obj}: {what} could not be described; re-copy with pg2edge resync",
                       commit_lsn)
        return findings
    for dropped in change.dropped:
        kind, schema, name = dropped.get("type"), str(dropped.get("schema")), str(dropped.get("name"))
        if kind == "table" and (schema, name) in applier.mappings:
            target = applier.mappings.pop((schema, name)).target
            conn.execute(f"DROP TABLE IF EXISTS {quote_ident(target)}")
            conn.execute(f"DELETE FROM {state._T} WHERE scope IN ('table', ?, ?) AND name = ?",
                         (BASELINE_SCOPE, resync.SCOPE, f"{schema}.{name}"))
            tables.pop(f"{schema}.{name}", None)
            findings.append(Finding(Level.INFO, "table-dropped", f"{schema}.{name}", f"{what}: replica table dropped"))
        elif kind == "index" and drop_index(conn, schema, name):
            findings.append(Finding(Level.INFO, "index-dropped-on-source", f"{schema}.{name}", f"{what}: dropped"))
    baselines = read_baselines(conn)
    translated = {f"{s}.{t}" for s, t in applier.mappings}
    for d in describe(change).values():
        key = mapping_key(applier.mappings, baselines, d)
        if key is None:
            if change.tag == "CREATE TABLE":
                findings.append(_created(conn, d, what, commit_lsn, can_recopy=can_recopy))
            continue
        qualified = f"{key[0]}.{key[1]}"
        ts = tables.get(qualified) or state.TableState(table=qualified)
        if ts.paused:
            findings.append(Finding(Level.WARN, "ddl-on-paused-table", qualified, f"{what}: not followed (paused)"))
            continue
        mapping = applier.mappings[key]
        conn.execute("SAVEPOINT pg2edge_ddl")
        try:
            done = follow_table(conn, key=key, target=mapping.target, described=d, baseline=baselines.get(qualified),
                                statement=change.statement, options=applier.options, translated=translated,
                                statement_known=change.event != FALLBACK_EVENT)
        except (apsw.Error, _Ambiguous, Pg2EdgeError) as exc:
            conn.execute("ROLLBACK TO pg2edge_ddl")
            conn.execute("RELEASE pg2edge_ddl")
            applier.forget_tables()
            reason = f"{what} not followed: {exc}"
            findings.append(Finding(Level.ERROR, "ddl-not-followed", qualified, reason))
            _pause(conn, tables, key, reason, commit_lsn)
            continue
        conn.execute("RELEASE pg2edge_ddl")
        applier.forget_tables()
        findings += done.findings
        new_key = done.new_key or key
        new_q = f"{new_key[0]}.{new_key[1]}"
        assert done.table is not None
        if mapping.reshape is not None:
            mapping.reshape(done.table)
        applier.mappings.pop(key)
        applier.mappings[new_key] = replace(mapping, target=done.target)
        if new_key != key:
            conn.execute(f"DELETE FROM {state._T} WHERE scope IN ('table', ?) AND name = ?", (BASELINE_SCOPE, qualified))
            tables.pop(qualified, None)
        ts = replace(ts, table=new_q, columns=relation_columns(done.table))
        state.write_table(conn, ts)
        tables[new_q] = ts
        write_baseline(conn, new_q, baseline_record(d))
        _record_types(conn, done.table, applier.options)
        if done.resync and not can_recopy:
            reason = (f"{what}: {'; '.join(done.resync)}: the values must be re-copied, which this replica cannot "
                      "do while streaming (a remote target, or a Kafka replica without source access); table "
                      "paused (rebuild the replica)")
            findings.append(Finding(Level.ERROR, "ddl-needs-recopy", new_q, reason))
            _pause(conn, tables, new_key, reason, commit_lsn)
        elif done.resync:
            reason = "; ".join(done.resync)
            findings.append(Finding(Level.WARN, "table-recopy", new_q,
                                    f"{what}: {reason}: re-copying from a fresh snapshot (pg2edge resync)"))
            resync.request(conn, new_q, since_lsn=commit_lsn, reason=reason)
    return findings


def refuse(applier: Follower, change: SchemaChange, reason: str, *, commit_lsn: int,
           tables: dict[str, state.TableState]) -> list[Finding]:
    """The target refused ``change`` (a remote batch failed at one of its statements): pause each mapped
    table it is about, named, inside the applier's transaction; nothing of it is applied."""
    keys: set[tuple[str, str]] = set()
    baselines = read_baselines(applier.conn)
    for d in describe(change).values():
        key = mapping_key(applier.mappings, baselines, d)
        if key is not None:
            keys.add(key)
    for dropped in change.dropped:
        if dropped.get("type") == "table" and (str(dropped.get("schema")), str(dropped.get("name"))) in applier.mappings:
            keys.add((str(dropped.get("schema")), str(dropped.get("name"))))
    for command in change.commands:
        key = _key_of(str(command.get("identity")), applier.mappings)
        if key is not None:
            keys.add(key)
    what = f"{change.tag} ({_short(change.statement)})"
    findings = []
    for key in sorted(keys):
        text = f"{what} not followed: the target refused it: {reason}; re-copy the table or rebuild the replica"
        findings.append(Finding(Level.ERROR, "ddl-not-followed", f"{key[0]}.{key[1]}", text))
        _pause(applier.conn, tables, key, text, commit_lsn)
    return findings


def interleave(txn: Any) -> Iterator[tuple[ChangeEvent | None, SchemaChange | None]]:
    """A transaction's row events and schema changes in source order: ``(event, None)`` or ``(None, change)``
    (a change's ``index`` is the number of row events before it)."""
    changes = list(txn.schema_changes)
    for i, ev in enumerate(txn.events):
        while changes and changes[0].index <= i:
            yield None, changes.pop(0)
        yield ev, None
    for change in changes:
        yield None, change


def described_by_changes(txn: Any) -> set[tuple[str, str]]:
    """Tables a schema change of ``txn`` describes: their Relation messages need no drift handling (the
    change follows them at its position)."""
    return {(str(r[1]), str(r[2])) for c in txn.schema_changes for r in c.catalog.get("rels", ())}


def _record_types(conn: apsw.Connection, table: Table, options: TranslateConfig) -> None:
    """Keep the source types the replica records for ``translate query --target`` (translators/recorded.py)
    in step with the new shape."""
    from pg2edge.translators.recorded import SourceTypes, read_source_types, write_source_types
    from pg2edge.translators.schema import Schema

    known = read_source_types(conn, missing_ok=True)
    one = Schema(tables=(table,))
    write_source_types(conn, SourceTypes(tables=one.column_types(), enums=one.enum_labels(),
                                         timestamps=known.timestamps if known else options.timestamps,
                                         numeric=known.numeric if known else options.numeric))


def _short(statement: str, limit: int = 200) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key_of(identity: str, mappings: Mapping[tuple[str, str], Any]) -> tuple[str, str] | None:
    parts = identity.replace('"', "").split(".")
    for n in (2, 3):
        if len(parts) >= n and (parts[0], parts[1]) in mappings:
            return (parts[0], parts[1])
    return None


def _pause(conn: apsw.Connection, tables: dict[str, state.TableState], key: tuple[str, str], reason: str,
           lsn: int) -> None:
    qualified = f"{key[0]}.{key[1]}"
    ts = paused(tables.get(qualified) or state.TableState(table=qualified), reason, lsn)
    state.write_table(conn, ts)
    tables[qualified] = ts


def selected(conn: apsw.Connection, table: Table) -> bool:
    """Whether the replica's table selection (``--tables`` globs at the snapshot) matches ``table``."""
    import fnmatch

    record = state.read_record(conn, "source", "selection")
    if record is None:
        return False
    tables = record.get("tables")
    items = tables.split(",") if isinstance(tables, str) else list(tables or [])
    patterns = [p.strip() for p in items if p.strip()]
    if not patterns:
        return table.schema == "public"
    return any(fnmatch.fnmatchcase(table.qualified if "." in p else table.name, p) for p in patterns)


def _created(conn: apsw.Connection, d: Described, what: str, commit_lsn: int, *, can_recopy: bool = True) -> Finding:
    """CREATE TABLE: follow it (add to the publication and copy, by the re-copier) when the selection
    matches and the table has a usable replica identity; else name it."""
    from pg2edge.pipeline import resync

    qualified = d.table.qualified
    if not selected(conn, d.table):
        return Finding(Level.INFO, "table-created", qualified, f"{what}: not in the replica's table selection")
    if not d.table.primary_key and d.table.replica_identity != "f":
        return Finding(Level.WARN, "table-created", qualified,
                       f"{what}: matches the table selection but has no primary key (and not REPLICA IDENTITY "
                       "FULL): not replicated")
    if not can_recopy:
        return Finding(Level.WARN, "table-created", qualified,
                       f"{what}: matches the table selection, but pg2edge cannot copy a new table into a remote "
                       "target while streaming: not replicated (rebuild the replica to include it)")
    resync.request(conn, qualified, since_lsn=commit_lsn, reason="created on the source", add=True)
    return Finding(Level.INFO, "table-created", qualified,
                   f"{what}: matches the table selection: added to the publication and copied")
