"""Capture source DDL as stream events: event triggers that emit transactional logical messages.

Two event triggers (``ddl_command_end`` and ``sql_drop``) call one function that
emits ``pg_logical_emit_message(true, 'pg2edge', <json>)`` inside the DDL's own
transaction, so the message reaches the slot at the DDL's exact position in
commit order (pgoutput's ``messages 'true'`` option, already on). The JSON
carries the command tag, the statement text (informational only: it is never
executed on a target) and a catalog description of every affected table: the
rows of the schema translator's own catalog queries
(:mod:`pg2edge.translators.introspect`), plus attribute numbers (to tell a
RENAME from a DROP + ADD), the value existing rows get from a constant ADD
COLUMN default (``attmissingval``) and the relfilenode (to see a table rewrite).

Event triggers need superuser on PostgreSQL 15. Without it the replica runs in
*fallback* mode: Relation messages plus catalog reads (:mod:`pg2edge.pipeline.drift`,
:mod:`pg2edge.pipeline.schema_apply`); ``status`` shows the mode.

The triggers and their function are a source change with its undo, recorded in
the replica's state, so ``teardown`` removes them. Each replica's triggers are
named after its slot and stamp their messages with it (``capture``), so several
replicas of one database never apply each other's messages twice.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge.dsn import control, describe
from pg2edge.pipeline import state
from pg2edge.pipeline.sourcechanges import SourceChange, apply_changes
from pg2edge.translators.introspect import COLUMNS_SQL, CONSTRAINTS_SQL, INDEXES_SQL, TABLES_SQL, TYPES_SQL

log = logging.getLogger(__name__)

PREFIX = "pg2edge"
MODE_SCOPE, MODE_NAME = "capture", "mode"
EVENT_TRIGGERS, FALLBACK = "event-triggers", "fallback"

_N = {"types": 13, "tables": 6, "columns": 11, "constraints": 12, "indexes": 8, "attrs": 5, "rels": 5}

_TYPE_FILTER = """
SELECT * FROM ({types}) q WHERE q.oid >= 16384
   OR q.oid IN (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = ANY(%(oids)s))
   OR q.oid IN (SELECT t.typelem FROM pg_type t JOIN pg_attribute a ON a.atttypid = t.oid
                WHERE a.attrelid = ANY(%(oids)s))
   OR q.oid IN (SELECT t.typbasetype FROM pg_type t WHERE t.oid >= 16384)
   OR q.oid IN (SELECT e.typelem FROM pg_type e WHERE e.oid IN (SELECT t.typbasetype FROM pg_type t
                WHERE t.oid >= 16384))
"""

_TABLE_FILTER = "SELECT * FROM ({tables}) q WHERE q.oid = ANY(%(oids)s)"

ATTRS_SQL = """
SELECT a.attrelid, a.attnum, a.attname, a.atthasmissing,
       CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END
FROM pg_attribute a WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

RELS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relfilenode, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%(oids)s)
"""


def _queries() -> dict[str, str]:
    tables = TABLES_SQL.replace("%(schemas)s", "ARRAY(SELECT nspname::text FROM pg_namespace)") \
        .replace("%(all)s", "true").replace("%(tables)s", "ARRAY[]::text[]")
    return {"types": _TYPE_FILTER.format(types=TYPES_SQL), "tables": _TABLE_FILTER.format(tables=tables),
            "columns": COLUMNS_SQL, "constraints": CONSTRAINTS_SQL, "indexes": INDEXES_SQL,
            "attrs": ATTRS_SQL, "rels": RELS_SQL}


def _as_json(name: str, query: str) -> str:
    cols = ", ".join(f"c{i}" for i in range(_N[name]))
    return (f"(SELECT coalesce(jsonb_agg(jsonb_build_array({cols})), '[]'::jsonb) "
            f"FROM ({query}) AS q({cols}))")


def describe_sql() -> str:
    """One query returning the catalog description (jsonb) of the tables ``%(oids)s``."""
    parts = ", ".join(f"'{name}', {_as_json(name, q)}" for name, q in _queries().items())
    return f"SELECT jsonb_build_object({parts})"


def describe_tables(conn: psycopg.Connection[Any], oids: list[int]) -> dict[str, Any]:
    """The same description the trigger emits, read now (the baseline of a replica's tables)."""
    row = conn.execute(describe_sql().encode(), {"oids": oids}).fetchone()
    assert row is not None
    return dict(row[0])


def _function_name(slot: str) -> str:
    return f"{slot}_capture"


def _body(slot: str) -> str:
    describe_q = re.sub(r"%\(oids\)s", "v_oids", describe_sql())
    slot_lit = "'" + slot.replace("'", "''") + "'"
    return f"""
DECLARE
  v_oids oid[];
  v_commands jsonb := '[]'::jsonb;
  v_dropped jsonb := '[]'::jsonb;
  v_catalog jsonb;
BEGIN
  IF TG_EVENT = 'ddl_command_end' THEN
    SELECT coalesce(array_agg(DISTINCT coalesce(i.indrelid, c.oid)) FILTER (
             WHERE c.relkind IN ('r', 'p', 'i', 'I')), ARRAY[]::oid[]),
           coalesce(jsonb_agg(jsonb_build_object('tag', d.command_tag, 'type', d.object_type,
             'identity', d.object_identity, 'objid', d.objid, 'subid', d.objsubid)), '[]'::jsonb)
      INTO v_oids, v_commands
      FROM pg_event_trigger_ddl_commands() d
      LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
      LEFT JOIN pg_index i ON i.indexrelid = c.oid;
  ELSE
    SELECT coalesce(jsonb_agg(jsonb_build_object('type', o.object_type, 'schema', o.schema_name,
             'name', o.object_name, 'identity', o.object_identity, 'objid', o.objid, 'subid', o.objsubid,
             'original', o.original, 'address', to_jsonb(o.address_names))), '[]'::jsonb),
           coalesce(array_agg(DISTINCT o.objid) FILTER (WHERE o.object_type = 'table column'
             AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = o.objid)), ARRAY[]::oid[])
      INTO v_dropped, v_oids
      FROM pg_event_trigger_dropped_objects() o
     WHERE o.object_type IN ('table', 'table column', 'index', 'table constraint');
    IF v_dropped = '[]'::jsonb THEN RETURN; END IF;
  END IF;
  IF cardinality(v_oids) = 0 AND v_dropped = '[]'::jsonb THEN RETURN; END IF;
  BEGIN
    v_catalog := ({describe_q});
  EXCEPTION WHEN OTHERS THEN
    v_catalog := jsonb_build_object('error', SQLERRM);
  END;
  PERFORM pg_catalog.pg_logical_emit_message(true, '{PREFIX}', jsonb_build_object(
    'v', 1, 'capture', {slot_lit}, 'event', TG_EVENT, 'tag', TG_TAG, 'statement', current_query(),
    'commands', v_commands, 'dropped', v_dropped, 'oids', to_jsonb(v_oids), 'catalog', v_catalog)::text);
EXCEPTION WHEN OTHERS THEN
  -- never fail the application's migration: emit what went wrong, the target names it and pauses
  PERFORM pg_catalog.pg_logical_emit_message(true, '{PREFIX}', jsonb_build_object(
    'v', 1, 'capture', {slot_lit}, 'event', TG_EVENT, 'tag', TG_TAG, 'statement', current_query(),
    'error', SQLERRM)::text);
END
"""


def capture_change(conn: psycopg.Connection[Any], slot: str) -> SourceChange:
    """The source change that installs ``slot``'s capture (function + two event triggers), with its undo."""
    fn = sql.Identifier("public", _function_name(slot))
    end, drop = sql.Identifier(f"{slot}_ddl_end"), sql.Identifier(f"{slot}_sql_drop")
    create = sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp AS {body};\n"
        "CREATE EVENT TRIGGER {end} ON ddl_command_end EXECUTE FUNCTION {fn}();\n"
        "CREATE EVENT TRIGGER {drop} ON sql_drop EXECUTE FUNCTION {fn}()").format(
        fn=fn, body=sql.Literal(_body(slot)), end=end, drop=drop)
    undo = sql.SQL("DROP EVENT TRIGGER IF EXISTS {end}; DROP EVENT TRIGGER IF EXISTS {drop}; "
                   "DROP FUNCTION IF EXISTS {fn}()").format(end=end, drop=drop, fn=fn)
    return SourceChange(description=f"create event triggers {slot}_ddl_end, {slot}_sql_drop (schema changes "
                                    "become logical messages in the stream)",
                        sql=create.as_string(conn), undo_sql=undo.as_string(conn))


def can_capture(conn: psycopg.Connection[Any]) -> bool:
    """Event triggers need superuser on PostgreSQL 15."""
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def install_capture(dsn: str, *, slot: str, replica: apsw.Connection | None = None,
                    say: Any = log.info) -> str:
    """Install the event triggers (superuser) or choose fallback mode; records the mode; returns it."""
    with control(dsn) as conn:
        ok = can_capture(conn)
        change = capture_change(conn, slot) if ok else None
    mode = FALLBACK
    if change is not None:
        try:
            apply_changes(dsn, [change])
            mode = EVENT_TRIGGERS
            say(f"source change: {change.description} (undo: {change.undo_sql})")
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("event triggers not created at %s (%s): fallback mode", describe(dsn), exc)
            change = None
    if mode == FALLBACK:
        say(f"schema changes: fallback mode at {describe(dsn)} (event triggers need superuser): changes are "
            "detected from Relation messages and catalog reads; what that cannot see is named")
    if replica is not None:
        with replica:
            if change is not None:
                state.record_source_changes(replica, [change])
            state.write_record(replica, MODE_SCOPE, MODE_NAME, {"mode": mode, "slot": slot})
    return mode


def capture_mode(replica: apsw.Connection) -> str | None:
    """The replica's capture mode (``event-triggers`` or ``fallback``), None when never set up."""
    data = state.read_record(replica, MODE_SCOPE, MODE_NAME)
    return str(data["mode"]) if data else None


def capture_slot(replica: apsw.Connection) -> str | None:
    data = state.read_record(replica, MODE_SCOPE, MODE_NAME)
    return str(data.get("slot")) if data and data.get("mode") == EVENT_TRIGGERS else None
