"""What a schema change describes, and the replica's baselines of it.

A :class:`~pg2edge.pipeline.events.SchemaChange` carries the translator's own
catalog rows of each affected table after the change; :func:`describe` turns
them into schema-model tables (the same ``schema_from_rows`` as the snapshot).
The replica keeps a *baseline* per source table (its oid, attribute numbers and
catalog rows at the replica's position) in its state table: attribute numbers
tell a RENAME from a DROP + ADD, the oid follows a table across a RENAME TO,
and the catalog rows give the source shape at the replica's position after a
restart (:func:`align_mappings`, :func:`use_baselines`). A Kafka replica has no
source: the publisher's baselines travel with each change (:func:`adopt_baselines`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.events import SchemaChange
from pg2edge.translators.introspect import schema_from_rows
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.schema import Table

if TYPE_CHECKING:
    from pg2edge.pipeline.sinks.statements import TableMapping

BASELINE_SCOPE = "schema_baseline"  # per source table: {"oid", "attnums": {num: [name, type_oid, typmod]}}


@dataclass(frozen=True, slots=True)
class Described:
    """One table as a schema change describes it."""

    oid: int
    table: Table
    attrs: dict[int, tuple[str, bool, str | None]]  # attnum -> (name, has a missing value, its text)
    relfilenode: int
    catalog: Mapping[str, Any] = field(default_factory=dict)  # the catalog rows of this table alone


def describe(change: SchemaChange) -> dict[int, Described]:
    """The tables a change describes, by oid, as schema-model tables."""
    cat = _typed(change.catalog)
    if not cat or "tables" not in cat:
        return {}
    schema = schema_from_rows(cat.get("types", []), cat.get("tables", []), cat.get("columns", []),
                              cat.get("constraints", []), cat.get("indexes", []),
                              schemas=sorted({r[1] for r in cat.get("tables", [])}) or ["public"])
    by_name = {t.qualified: t for t in schema.tables}
    attrs: dict[int, dict[int, tuple[str, bool, str | None]]] = {}
    for rel, num, name, has_missing, missing in cat.get("attrs", []):
        attrs.setdefault(int(rel), {})[int(num)] = (str(name), bool(has_missing), missing)
    out = {}
    for oid, nsp, name, filenode, kind in cat.get("rels", []):
        table = by_name.get(f"{nsp}.{name}")
        if table is None or kind not in ("r", "p"):
            continue
        own = {k: [r for r in v if int(r[0]) == int(oid)] if k != "types" else v for k, v in cat.items()
               if isinstance(v, list)}
        out[int(oid)] = Described(int(oid), table, attrs.get(int(oid), {}), int(filenode or 0), own)
    return out


_OID_FIELDS = {"types": (0, 4, 5), "tables": (0,), "columns": (0, 3), "constraints": (0,), "indexes": (0,),
               "attrs": (0,), "rels": (0, 3)}


def _typed(catalog: Mapping[str, Any]) -> dict[str, Any]:
    """JSON carries oids as text: make them ints again, as psycopg gives them to introspect()."""
    out: dict[str, Any] = dict(catalog)
    for name, fields in _OID_FIELDS.items():
        rows = []
        for row in catalog.get(name) or ():
            row = list(row)
            for i in fields:
                if row[i] is not None:
                    row[i] = int(row[i])
            rows.append(row)
        out[name] = rows
    return out


# -- the baseline (attribute numbers) --------------------------------------------------------------------
def baseline_record(d: Described) -> dict[str, Any]:
    """What the replica keeps of a source table's shape: oid, attribute numbers, the catalog rows."""
    cols = {c.name: c for c in d.table.columns}
    return {"oid": d.oid, "attnums": {str(n): [a[0], cols[a[0]].type_oid, cols[a[0]].typmod]
                                      for n, a in d.attrs.items() if a[0] in cols}, "catalog": dict(d.catalog)}


def baseline_model(conn: apsw.Connection, qualified: str) -> Table | None:
    """The source table's shape as last followed (from its baseline), or None."""
    record = state.read_record(conn, BASELINE_SCOPE, qualified)
    if not record or not record.get("catalog"):
        return None
    for d in describe(SchemaChange(lsn=0, tag="baseline", statement="", catalog=record["catalog"])).values():
        return d.table
    return None


def write_baseline(conn: apsw.Connection, qualified: str, record: Mapping[str, Any]) -> None:
    state.write_record(conn, BASELINE_SCOPE, qualified, dict(record))


def read_baselines(conn: apsw.Connection) -> dict[str, dict[str, Any]]:
    return state.read_scope(conn, BASELINE_SCOPE)


def record_baselines(dsn: str, conn: apsw.Connection, tables: Sequence[tuple[str, str]]) -> None:
    """Record the attribute numbers of ``tables`` not yet recorded (read from the source now)."""
    from pg2edge import dsn as dsnlib
    from pg2edge.pipeline.ddl_capture import describe_tables

    known = read_baselines(conn)
    todo = [f"{s}.{t}" for s, t in tables if f"{s}.{t}" not in known]
    if not todo:
        return
    with dsnlib.control(dsn) as pg:
        oids = [int(r[0]) for r in pg.execute("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                               "c.relnamespace WHERE n.nspname || '.' || c.relname = ANY(%s)",
                                               (todo,)).fetchall()]
        cat = describe_tables(pg, oids)
    change = SchemaChange(lsn=0, tag="baseline", statement="", catalog=cat)
    with conn:
        for d in describe(change).values():
            write_baseline(conn, d.table.qualified, baseline_record(d))


def adopt_baselines(conn: apsw.Connection, change: SchemaChange) -> None:
    """A change from a Kafka topic carries the publisher's baselines of its tables (``catalog["baselines"]``,
    the attribute numbers before it): the replica, which has no source access, keeps those it lacks
    (inside the caller's transaction)."""
    carried = change.catalog.get("baselines")
    if not isinstance(carried, dict) or not carried:
        return
    known = read_baselines(conn)
    for qualified, record in carried.items():
        if qualified not in known and isinstance(record, dict):
            write_baseline(conn, qualified, record)


def align_mappings(dsn: str, conn: apsw.Connection,
                   mappings: dict[tuple[str, str], TableMapping]) -> dict[tuple[str, str], TableMapping]:
    """At the start of a run: the mappings under the names and shapes at the replica's position.

    The publication lists the source's current names; a table renamed on the source while the sync was
    down is still under its old name on the replica (the RENAME reaches it later, in the stream). Tables
    are matched by oid through the baselines; the baselines of tables met for the first time are recorded."""
    from pg2edge import dsn as dsnlib

    with dsnlib.control(dsn) as pg:
        oid_of = {(str(r[1]), str(r[2])): int(r[0]) for r in pg.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname || '.' || c.relname = ANY(%s)", ([f"{s}.{t}" for s, t in mappings],)).fetchall()}
    known = {int(rec.get("oid", -1)): qualified for qualified, rec in read_baselines(conn).items()}
    out: dict[tuple[str, str], TableMapping] = {}
    for key, mapping in mappings.items():
        was = known.get(oid_of.get(key, -2))
        if was is not None and was != f"{key[0]}.{key[1]}":
            schema, _, name = was.partition(".")
            out[(schema, name)] = replace(mapping, target=sqlite_table_name(schema, name))
        else:
            out[key] = mapping
    record_baselines(dsn, conn, [k for k in out if oid_of.get(k, -2) not in known])
    use_baselines(conn, out)
    return out


def use_baselines(conn: apsw.Connection, mappings: Mapping[tuple[str, str], TableMapping]) -> None:
    """Give each mapping the source shape its baseline records (the shape at the replica's position: after a
    restart the source may already be several schema changes further)."""
    for (schema, name), mapping in mappings.items():
        model = baseline_model(conn, f"{schema}.{name}")
        if model is not None and mapping.reshape is not None:
            mapping.reshape(model)
