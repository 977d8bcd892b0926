"""A drizzle-orm ``schema.ts`` (sqlite-core) that describes exactly the DDL pg2edge creates.

The planned DDL is run on an in-memory SQLite and read back the way
drizzle-kit reads a database (``PRAGMA table_xinfo``, ``foreign_key_list``,
``index_list``), so ``drizzle-kit push`` against a fresh replica plans no
change. The PostgreSQL types choose the typed modes: booleans
``integer({ mode: "boolean" })``, json/jsonb ``text({ mode: "json" }).$type<Json>()``,
arrays ``text({ mode: "json" }).$type<T[]>()``, enums ``text({ enum: [...] })``,
timestamps per ``[translate] timestamps`` (iso: text; unix: ``integer({ mode:
"timestamp" })``; unix_ms: ``timestamp_ms``). Foreign keys also become
``relations()``; views become ``sqliteView(...).existing()``. What drizzle-kit
cannot read back (index sort order and predicates, CHECK constraints, the
RTRIM collation) is kept in the replica and noted in a comment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import apsw

from pg2edge.config import TranslateConfig
from pg2edge.translators.ddl import plan_ddl, table_order
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.translators.schema import Column, Schema, Table, View
from pg2edge.translators.typemap import rule_for

_JSON_TYPE = "export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };\n"
_NUMBER = re.compile(r"^-?[\d.]+(?:e-?\d+)?$")
_NUMBER_TYPES = ("int2", "int4", "int8", "float4", "float8", "numeric", "oid")


def ts_name(name: str) -> str:
    """A TypeScript identifier for a table/column name (camelCase, safe)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    ident = (parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:])) if parts else "t"
    return ident if not ident[0].isdigit() else "_" + ident


def _template(text: str) -> str:
    """``text`` inside a TypeScript template literal (sql`...`)."""
    return text.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")


@dataclass
class _Out:
    core: set[str] = field(default_factory=lambda: {"sqliteTable"})
    uses_sql: bool = False
    uses_json: bool = False
    uses_relations: bool = False


def _element_ts(column: Column) -> str:
    element = column.element_type or "text"
    if element in ("bool",):
        return "boolean"
    if element in _NUMBER_TYPES:
        return "number"
    if element in ("json", "jsonb"):
        return "Json"
    if column.enum_labels is not None:
        return " | ".join(json.dumps(label) for label in column.enum_labels) or "string"
    return "string"


def _builder(column: Column, decl: str, options: TranslateConfig, out: _Out) -> str:
    """``integer("x", { mode: "boolean" })`` and friends for one column."""
    name = json.dumps(column.name)
    kind = column.kind
    if kind == "bool" and decl == "INTEGER":
        out.core.add("integer")
        return f'integer({name}, {{ mode: "boolean" }})'
    if kind in ("json", "jsonb") and decl == "TEXT":
        out.core.add("text")
        out.uses_json = True
        return f'text({name}, {{ mode: "json" }}).$type<Json>()'
    if kind == "array" and decl == "TEXT":
        out.core.add("text")
        element = _element_ts(column)
        out.uses_json = out.uses_json or "Json" in element
        return f'text({name}, {{ mode: "json" }}).$type<({element})[]>()'
    if kind == "enum" and decl == "TEXT" and column.enum_labels:
        out.core.add("text")
        return f"text({name}, {{ enum: {json.dumps(list(column.enum_labels))} }})"
    if kind in ("timestamp", "timestamptz") and decl == "INTEGER" and options.timestamps in ("unix", "unix_ms"):
        out.core.add("integer")
        mode = "timestamp" if options.timestamps == "unix" else "timestamp_ms"
        return f'integer({name}, {{ mode: "{mode}" }})'
    if decl == "INTEGER":
        out.core.add("integer")
        return f"integer({name})"
    if decl == "REAL":
        out.core.add("real")
        return f"real({name})"
    if decl == "BLOB":
        out.core.add("blob")
        return f'blob({name}, {{ mode: "buffer" }})'
    out.core.add("text")
    return f"text({name})"


def _default(value: str, builder: str, out: _Out) -> str:
    """``.default(...)`` as drizzle-kit compares it with what SQLite reports (``dflt_value``).

    A number must be a JS number (a boolean-mode column gets it as ``1 as never``: drizzle-kit compares
    ``true`` with SQLite's ``1`` as different); anything else is the SQL text itself, so an insert that
    leaves the column out gets exactly the replica's default.
    """
    out_of_type = 'mode: "boolean"' in builder or 'mode: "timestamp' in builder or 'mode: "json"' in builder
    if _NUMBER.match(value):
        return f".default({value}{' as never' if out_of_type else ''})"
    out.uses_sql = True
    if value.startswith("'") and value.endswith("'"):
        return f".default(sql`{_template(value)}`)"
    return f".default(sql`({_template(value)})`)"


class _Reader:
    """The planned tables as SQLite (and so drizzle-kit) reads them back."""

    def __init__(self, statements: Sequence[str]) -> None:
        self.db = apsw.Connection(":memory:")
        for statement in statements:
            if not statement.startswith("CREATE VIEW"):
                self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    def columns(self, table: str) -> list[tuple[str, str, bool, str | None, int]]:
        rows = self.db.execute(f"PRAGMA table_xinfo({quote_ident(table)})").fetchall()
        return [(str(r[1]), str(r[2]).upper(), bool(r[3]), None if r[4] is None else str(r[4]), int(str(r[5])))
                for r in rows if r[6] == 0]

    def foreign_keys(self, table: str) -> list[tuple[str, list[str], list[str], str, str]]:
        groups: dict[int, tuple[str, list[str], list[str], str, str]] = {}
        for fid, _seq, ref, frm, to, on_update, on_delete, _match in \
                self.db.execute(f"PRAGMA foreign_key_list({quote_ident(table)})"):
            entry = groups.setdefault(fid, (ref, [], [], on_update.lower(), on_delete.lower()))
            entry[1].append(frm)
            entry[2].append(to)
        return [groups[k] for k in sorted(groups, reverse=True)]

    def indexes(self, table: str) -> list[tuple[str, bool, list[str | None]]]:
        out = []
        for _seq, name, unique, origin, _partial in self.db.execute(f"PRAGMA index_list({quote_ident(table)})"):
            if origin != "c":
                continue
            cols = [r[2] for r in self.db.execute(f"PRAGMA index_info({quote_ident(name)})")]
            out.append((str(name), bool(unique), cols))
        return sorted(out)

    def table_sql(self, name: str) -> str:
        row = self.db.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return str(row[0]) if row else ""

    def index_sql(self, name: str) -> str:
        row = self.db.execute("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", (name,)).fetchone()
        return str(row[0]) if row else ""


def render_drizzle(schema: Schema, *, options: TranslateConfig) -> str:
    """A drizzle-orm ``schema.ts`` for the planned tables (and the views the plan creates)."""
    plan = plan_ddl(schema, options=options)
    ordered = table_order(schema.tables)
    names: dict[str, str] = {}
    for relation in [*(t.qualified for t in ordered), *(v.qualified for v in schema.views)]:
        schema_name, _, rel = relation.partition(".")
        base = ts_name(sqlite_table_name(schema_name, rel))
        name = base
        while name in names.values() or name in ("sql", "relations", "Json"):
            name += "_"
        names[relation] = name
    by_sqlite = {sqlite_table_name(t.schema, t.name): t for t in ordered}
    out = _Out()
    body: list[str] = []
    reader = _Reader(plan.statements)
    try:
        for table in ordered:
            body.append(_table(table, reader, names, by_sqlite, options, out))
        relations = _relations(ordered, reader, names, by_sqlite, out)
        created = {s.split('"')[1] for s in plan.statements if s.startswith("CREATE VIEW")}
        views = [_view(v, names, options, out, schema) for v in schema.views
                 if sqlite_table_name(v.schema, v.name) in created]
    finally:
        reader.close()
    head = f"import {{ {', '.join(sorted(out.core))} }} from \"drizzle-orm/sqlite-core\";\n"
    orm = sorted(({"sql"} if out.uses_sql else set()) | ({"relations"} if out.uses_relations else set()))
    if orm:
        head += f"import {{ {', '.join(orm)} }} from \"drizzle-orm\";\n"
    head += "\n" + (_JSON_TYPE + "\n" if out.uses_json else "")
    return head + "\n".join(body + relations + views)


def _table(table: Table, reader: _Reader, names: dict[str, str], by_sqlite: dict[str, Table],
           options: TranslateConfig, out: _Out) -> str:
    sqlite_name = sqlite_table_name(table.schema, table.name)
    lines, notes, extras = [], [], []
    columns = reader.columns(sqlite_name)
    pk_columns = [c[0] for c in sorted(columns, key=lambda c: c[4]) if c[4] > 0]
    for name, decl, not_null, default, pk in columns:
        col = table.column(name)
        expr = _builder(col, decl, options, out)
        if pk and len(pk_columns) == 1:
            expr += ".primaryKey()"
        if not_null:
            expr += ".notNull()"
        if default is not None:
            expr += _default(str(default), expr, out)
        if rule_for(col, options=options).collation:
            notes.append(f"{name}: COLLATE {rule_for(col, options=options).collation}")
        lines.append(f"  {ts_name(name)}: {expr},")
    t = "t"
    if len(pk_columns) > 1:
        out.core.add("primaryKey")
        cols = ", ".join(f"{t}.{ts_name(c)}" for c in pk_columns)
        extras.append(f"primaryKey({{ columns: [{cols}] }})")
    for ref, frm, to, on_update, on_delete in reader.foreign_keys(sqlite_name):
        parent = by_sqlite.get(ref)
        if parent is None:
            continue
        out.core.add("foreignKey")
        owner = t if parent is table else names[parent.qualified]  # a self-reference goes through the table arg
        fk = (f"foreignKey({{ columns: [{', '.join(f'{t}.{ts_name(c)}' for c in frm)}], "
              f"foreignColumns: [{', '.join(f'{owner}.{ts_name(c)}' for c in to)}] }})")
        if on_delete != "no action":
            fk += f".onDelete({json.dumps(on_delete)})"
        if on_update != "no action":
            fk += f".onUpdate({json.dumps(on_update)})"
        extras.append(fk)
    for index_name, unique, index_cols in reader.indexes(sqlite_name):
        keys = []
        for key_col in index_cols:
            if key_col is None:  # an expression key: drizzle-kit reads it back as an empty column name
                out.uses_sql = True
                keys.append("sql``")
            else:
                keys.append(f"{t}.{ts_name(key_col)}")
        fn = "uniqueIndex" if unique else "index"
        out.core.add(fn)
        extras.append(f"{fn}({json.dumps(index_name)}).on({', '.join(keys)})")
        index_sql = reader.index_sql(index_name)
        if " DESC" in index_sql or " WHERE " in index_sql or None in index_cols:
            notes.append(f"index {index_name} is {index_sql!r} (drizzle-kit does not read back key expressions, "
                         "sort order or predicates)")
    if "CHECK" in reader.table_sql(sqlite_name):
        notes.append("CHECK constraints are in the replica's DDL (drizzle-kit does not read them back reliably)")
    comment = "".join(f"// {n}\n" for n in notes)
    joined = ",\n    ".join(extras)
    config = f", ({t}) => [\n    {joined},\n  ]" if extras else ""
    return (f"{comment}export const {names[table.qualified]} = sqliteTable({json.dumps(sqlite_name)}, {{\n"
            + "\n".join(lines) + f"\n}}{config});\n")


def _relations(ordered: list[Table], reader: _Reader, names: dict[str, str], by_sqlite: dict[str, Table],
               out: _Out) -> list[str]:
    one: dict[str, list[str]] = {}
    many: dict[str, list[str]] = {}
    for table in ordered:
        child = names[table.qualified]
        fks = [fk for fk in reader.foreign_keys(sqlite_table_name(table.schema, table.name)) if fk[0] in by_sqlite]
        for ref, frm, to, _u, _d in fks:
            parent = names[by_sqlite[ref].qualified]
            label = f"{sqlite_table_name(table.schema, table.name)}_{'_'.join(frm)}"
            fields = ", ".join(f"{child}.{ts_name(c)}" for c in frm)
            refs = ", ".join(f"{parent}.{ts_name(c)}" for c in to)
            key = ts_name(re.sub(r"_id$", "", frm[0]) if len(frm) == 1 else ref)
            one.setdefault(child, []).append(
                f"    {key}: one({parent}, {{ fields: [{fields}], references: [{refs}], relationName: {json.dumps(label)} }}),")
            many.setdefault(parent, []).append(
                f"    {ts_name(label)}: many({child}, {{ relationName: {json.dumps(label)} }}),")
    blocks = []
    for table in ordered:
        name = names[table.qualified]
        entries = one.get(name, []) + many.get(name, [])
        if not entries:
            continue
        out.uses_relations = True
        used = ", ".join(p for p in ("one", "many") if any(f": {p}(" in e for e in entries))
        blocks.append(f"export const {name}Relations = relations({name}, ({{ {used} }}) => ({{\n"
                      + "\n".join(entries) + "\n}));\n")
    return blocks


def _view(view: View, names: dict[str, str], options: TranslateConfig, out: _Out, schema: Schema) -> str:
    out.core.add("sqliteView")
    enums = {e.name: e.labels for e in schema.enums}
    lines = []
    for name, pg_type in view.columns:
        labels = enums.get(pg_type.split(".")[-1].strip('"'))
        col = Column(name=name, pg_type=pg_type, type_name=_type_name(pg_type), enum_labels=labels,
                     is_array=pg_type.endswith("]"), element_type=_type_name(pg_type[:-2]) if pg_type.endswith("]") else None)
        rule = rule_for(col, options=options)
        lines.append(f"  {ts_name(name)}: {_builder(col, rule.decl, options, out)},")
    return (f"export const {names[view.qualified]} = sqliteView({json.dumps(sqlite_table_name(view.schema, view.name))}, "
            "{\n" + "\n".join(lines) + "\n}).existing();\n")


_TYPE_NAMES = {"integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool", "real": "float4",
               "double precision": "float8", "timestamp with time zone": "timestamptz",
               "timestamp without time zone": "timestamp", "time without time zone": "time",
               "character varying": "varchar", "character": "bpchar", "interval": "interval"}


def _type_name(pg_type: str) -> str:
    """A format_type() string's typname ('numeric(4,2)' -> 'numeric')."""
    base = re.sub(r"\(.*\)", "", pg_type).strip().split(".")[-1].strip('"')
    return _TYPE_NAMES.get(base, base)
