"""Fallback mode (no event-trigger privilege): schema changes seen through Relation messages and catalog reads.

A Relation message that shows a changed table is followed from a catalog read
of that table (:func:`follow_relation`, through the same
:func:`pg2edge.pipeline.schema_apply.follow` as a captured change); what no
Relation message carries (indexes, defaults, constraints, DROP TABLE) is
compared with the replica periodically and named (:func:`unseen_changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.events import SchemaChange
from pg2edge.pipeline.schema_apply import (
    FALLBACK_EVENT,
    Follower,
    _indexes,
    _pause,
    _table_sql,
    follow,
    paused,
)
from pg2edge.pipeline.schema_model import describe, read_baselines
from pg2edge.translators.ddl import plan_table
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.naming import sqlite_table_name


def follow_relation(applier: Follower, rel: Any, read: Any, *, commit_lsn: int,
                    tables: dict[str, state.TableState]) -> list[Finding]:
    """Fallback mode: a Relation message shows a changed table; read its catalog now and follow that, when
    the catalog still has the columns the Relation message names (else the source moved on: named, paused)."""
    qualified = f"{rel.schema}.{rel.name}"
    try:
        catalog = read((rel.schema, rel.name))
    except Exception as exc:  # the source unreachable: named, paused; the operator resyncs
        catalog = {"error": f"{type(exc).__name__}: {exc}"}
    change = SchemaChange(lsn=commit_lsn, tag="Relation message (fallback mode)", statement="",
                          event=FALLBACK_EVENT, catalog=catalog, error=catalog.get("error"),
                          commands=({"identity": qualified},))
    now = next((d for d in describe(change).values() if d.table.qualified == qualified), None)
    if now is not None:
        sent = [(c.name, c.type_oid) for c in rel.columns]
        has = [(c.name, c.type_oid) for c in now.table.columns if c.generated is None]
        if sent != has:
            reason = (f"fallback mode: the source changed {qualified} again since this position "
                      f"(stream {sent}, catalog now {has}); not followed: pg2edge resync --tables {qualified}")
            _pause(applier.conn, tables, (rel.schema, rel.name), reason, commit_lsn)
            return [Finding(Level.ERROR, "ddl-not-followed", qualified, reason)]
    return follow(applier, change, commit_lsn=commit_lsn, tables=tables)


def unseen_changes(dsn: str, conn: apsw.Connection, tables: Sequence[tuple[str, str]],
                   options: TranslateConfig) -> list[Finding]:
    """Fallback mode: each replica table whose translated source schema differs from the replica now (an
    index, a default, a constraint: changes no Relation message carries), named. A table gone from the
    source under its name: renamed (its oid, from the baseline, has a new name: followed at its next
    Relation message), else dropped, or unknown without a baseline: named and paused."""
    from pg2edge import dsn as dsnlib
    from pg2edge.pipeline.ddl_capture import describe_tables

    replica_tables = state.read_tables(conn)
    translated = {f"{s}.{t}" for s, t in tables if f"{s}.{t}" in replica_tables}  # not followed away since
    baselines = read_baselines(conn)
    with dsnlib.control(dsn) as pg:
        oids = [int(r[0]) for r in pg.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                               "c.relnamespace WHERE n.nspname || '.' || c.relname = ANY(%s)",
                                               (sorted(translated),)).fetchall()]
        cat = describe_tables(pg, oids)
        described = describe(SchemaChange(lsn=0, tag="check", statement="", catalog=cat)).values()
        gone = sorted(translated - {d.table.qualified for d in described})
        old_oid = {q: int(baselines[q]["oid"]) for q in gone if "oid" in (baselines.get(q) or {})}
        now_named = {int(r[0]): f"{r[1]}.{r[2]}" for r in pg.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = ANY(%s)", (list(old_oid.values()),)).fetchall()}
    out = []
    for qualified in gone:
        renamed = now_named.get(old_oid.get(qualified, -1))
        if renamed is not None:  # the same table (oid) under a new name
            out.append(Finding(Level.WARN, "table-renamed-unseen", qualified,
                               f"renamed to {renamed} on the source (same oid): fallback mode follows the rename "
                               "at the table's next change, which PostgreSQL describes under its new name"))
            continue
        why = ("dropped on the source (its oid is gone)" if qualified in old_oid else
               "no longer on the source under this name, and no baseline (oid) tells a drop from a rename")
        reason = (f"{why}: fallback mode (no event triggers) cannot follow it at its position; table paused "
                  "(drop the replica table, or re-copy it under its new name)")
        out.append(Finding(Level.ERROR, "table-dropped-unseen" if qualified in old_oid else "table-gone-unseen",
                           qualified, reason))
        ts = replica_tables[qualified]
        if not ts.paused:
            with conn:
                state.write_table(conn, paused(ts, reason, ts.paused_at_lsn or 0))
    for d in described:
        create, index_sql, _ = plan_table(d.table, options=options, translated=translated)
        target = sqlite_table_name(d.table.schema, d.table.name)
        what = []
        if _table_sql(conn, target) != create:
            what.append("columns, defaults or constraints")
        if set(_indexes(conn, target).values()) != set(index_sql):
            what.append("indexes")
        if what:
            out.append(Finding(Level.WARN, "schema-change-unseen", d.table.qualified,
                               f"the source's {' and '.join(what)} differ from the replica's; fallback mode (no "
                               "event triggers) follows them at the table's next Relation message, or run "
                               f"pg2edge resync --tables {d.table.qualified}"))
    return out
