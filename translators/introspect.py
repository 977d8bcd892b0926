"""Read the schema model from a live PostgreSQL catalog (a constant number of queries).

A partitioned parent is one table (its partitions are folded in and listed);
the sequence behind any ``nextval()`` default is found through pg_depend, so
a sequence that is not OWNED BY the column is found too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from pg2edge.translators.dump import parse_dump as _parse
from pg2edge.translators.schema import Check, Column, Domain, Enum, ForeignKey, Index, Schema, Table, Unique, View

log = logging.getLogger(__name__)

__all__ = ["introspect", "parse_dump", "schema_from_rows"]

_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

TYPES_SQL = """
SELECT t.oid, n.nspname, t.typname, t.typtype, t.typelem, t.typbasetype, t.typtypmod, t.typnotnull,
       t.typdefault, t.typcategory, format_type(t.typbasetype, t.typtypmod),
       CASE WHEN t.typtype = 'd' THEN ARRAY(
           SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
           WHERE c.contypid = t.oid AND c.contype = 'c' ORDER BY c.conname) END,
       CASE WHEN t.typtype = 'e' THEN ARRAY(
           SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype IN ('b', 'd', 'e', 'r', 'm') OR t.typcategory = 'A'
"""

TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident,
       ARRAY(SELECT pn.nspname || '.' || p.relname FROM pg_partition_tree(c.oid) pt
             JOIN pg_class p ON p.oid = pt.relid JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE pt.isleaf AND pt.relid <> c.oid ORDER BY 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%(schemas)s)
  AND (%(all)s OR c.relname = ANY(%(tables)s) OR n.nspname || '.' || c.relname = ANY(%(tables)s))
ORDER BY n.nspname, c.relname
"""

COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       NULLIF(a.attidentity, ''),
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attndims,
       (SELECT sn.nspname || '.' || s.relname FROM pg_depend dep
          JOIN pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
          JOIN pg_namespace sn ON sn.oid = s.relnamespace
        WHERE (dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
               AND dep.refclassid = 'pg_class'::regclass)
        UNION ALL
        SELECT sn.nspname || '.' || s.relname FROM pg_depend dep
          JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
          JOIN pg_namespace sn ON sn.oid = s.relnamespace
        WHERE dep.classid = 'pg_class'::regclass AND dep.refobjid = a.attrelid
          AND dep.refobjsubid = a.attnum AND dep.deptype = 'i'
        LIMIT 1)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

CONSTRAINTS_SQL = """
SELECT con.conrelid, con.conname, con.contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
       fn.nspname, fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord),
       con.confdeltype, con.confupdtype, con.condeferrable, con.condeferred,
       CASE WHEN con.contype = 'c' THEN pg_get_expr(con.conbin, con.conrelid) END
FROM pg_constraint con
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.conrelid = ANY(%(oids)s) AND con.contype IN ('p', 'u', 'c', 'f') AND con.conparentid = 0
ORDER BY con.conrelid, con.contype, con.conname
"""

INDEXES_SQL = """
SELECT i.indrelid, ic.relname, i.indisunique, am.amname, pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT CASE WHEN i.indkey[k - 1] = 0 THEN pg_get_indexdef(i.indexrelid, k, true)
                         ELSE (SELECT a.attname FROM pg_attribute a
                               WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]) END
             FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT i.indkey[k - 1] = 0 FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       ARRAY(SELECT (i.indoption[k - 1] & 1) = 1 FROM generate_series(1, i.indnkeyatts) k ORDER BY k)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam
WHERE i.indrelid = ANY(%(oids)s)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                  AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.indrelid, ic.relname
"""

VIEWS_SQL = """
SELECT n.nspname, c.relname, pg_get_viewdef(c.oid, true), c.relkind = 'm',
       ARRAY(SELECT ARRAY[a.attname::text, format_type(a.atttypid, a.atttypmod)] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%(schemas)s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


def _strip_check(definition: str) -> str:
    text = definition.strip()
    if text.upper().startswith("CHECK "):
        text = text[6:]
    if text.upper().endswith(" NOT VALID"):
        text = text[: -len(" NOT VALID")]
    return text.strip()


class _Types:
    """pg_type rows by oid, with domain/enum resolution."""

    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows = {r[0]: r for r in rows}
        self.domains: dict[int, Domain] = {}
        self.enums: dict[int, Enum] = {}
        for r in rows:
            if r[3] == "e":
                self.enums[r[0]] = Enum(schema=r[1], name=r[2], labels=tuple(r[12] or ()))
        for r in rows:
            if r[3] == "d":
                base = self.resolve(r[5])
                self.domains[r[0]] = Domain(
                    schema=r[1], name=r[2], base_type=r[10], base_type_name=self.rows[base][2] if base in self.rows else "",
                    not_null=bool(r[7]), default=r[8], checks=tuple(_strip_check(c) for c in (r[11] or ())))

    def resolve(self, oid: int) -> int:
        """Follow domains down to the storage type."""
        seen = 0
        while oid in self.rows and self.rows[oid][3] == "d" and seen < 32:
            oid = self.rows[oid][5]
            seen += 1
        return oid

    def column(self, row: tuple[Any, ...]) -> Column:
        (_, name, pg_type, type_oid, typmod, not_null, default, identity, generated, ndims, sequence) = row
        domain = self.domains.get(type_oid)
        base = self.resolve(type_oid)
        info = self.rows.get(base)
        typname = info[2] if info else pg_type
        if domain is not None and domain.base_type_name == "" and info:
            domain = Domain(domain.schema, domain.name, domain.base_type, typname, domain.not_null,
                            domain.default, domain.checks)
        if domain is not None and typmod < 0 and info:
            typmod = self.rows[type_oid][6]
        is_array = bool(info and info[9] == "A" and info[4])
        element_type = None
        labels = None
        if is_array:
            assert info is not None  # is_array implies info
            elem = self.resolve(info[4])
            element_type = self.rows[elem][2] if elem in self.rows else None
            if elem in self.enums:
                labels = self.enums[elem].labels
        elif base in self.enums:
            labels = self.enums[base].labels
        return Column(
            name=name, pg_type=pg_type, type_name=typname, type_oid=type_oid, typmod=typmod,
            not_null=bool(not_null), default=default, identity=identity, generated=generated,
            is_array=is_array, array_ndims=int(ndims or (1 if is_array else 0)), element_type=element_type,
            enum_labels=labels, domain=domain, sequence=sequence)


def introspect(conn: psycopg.Connection[Any], *, schemas: Sequence[str] = ("public",),
               tables: list[str] | None = None) -> Schema:
    """The schema model of ``schemas`` (optionally only ``tables``: 'name' or 'schema.name')."""
    params: dict[str, Any] = {"schemas": list(schemas), "all": tables is None, "tables": list(tables or [])}
    with conn.cursor() as cur:
        type_rows = cur.execute(TYPES_SQL).fetchall()
        table_rows = cur.execute(TABLES_SQL, params).fetchall()
        params["oids"] = [r[0] for r in table_rows]
        column_rows = cur.execute(COLUMNS_SQL, params).fetchall()
        constraint_rows = cur.execute(CONSTRAINTS_SQL, params).fetchall()
        index_rows = cur.execute(INDEXES_SQL, params).fetchall()
        view_rows = cur.execute(VIEWS_SQL, params).fetchall()
    return schema_from_rows(type_rows, table_rows, column_rows, constraint_rows, index_rows, view_rows,
                            schemas=schemas)


def schema_from_rows(type_rows: Sequence[Sequence[Any]], table_rows: Sequence[Sequence[Any]],
                     column_rows: Sequence[Sequence[Any]], constraint_rows: Sequence[Sequence[Any]],
                     index_rows: Sequence[Sequence[Any]], view_rows: Sequence[Sequence[Any]] = (), *,
                     schemas: Sequence[str] = ("public",)) -> Schema:
    """The schema model from the rows of the catalog queries above (``introspect`` runs them on a
    connection; a schema-change message carries them for the tables it changed)."""
    types = _Types([tuple(r) for r in type_rows])
    columns: dict[int, list[Column]] = {}
    sequences: dict[int, list[str]] = {}
    for row in column_rows:
        col = types.column(tuple(row))
        columns.setdefault(row[0], []).append(col)
        if col.sequence:
            sequences.setdefault(row[0], []).append(col.sequence)
    cons: dict[int, list[Sequence[Any]]] = {}
    for row in constraint_rows:
        cons.setdefault(row[0], []).append(row)
    idx: dict[int, list[Index]] = {}
    for rel, name, unique, method, pred, keys, is_expr, desc in index_rows:
        idx.setdefault(rel, []).append(Index(
            name=name, keys=tuple(keys), unique=bool(unique), predicate=pred, expressions=tuple(is_expr),
            method=method, descending=tuple(desc)))
    views = [View(schema=s, name=n, definition=d, materialized=bool(m),
                  columns=tuple((str(a), str(t)) for a, t in cols))
             for s, n, d, m, cols in view_rows]
    out: list[Table] = []
    for oid, schema, name, kind, ident, parts in table_rows:
        pk: tuple[str, ...] = ()
        uniques, checks, fks = [], [], []
        for _, cname, ctype, ckeys, fschema, ftable, fkeys, deltype, updtype, deferrable, deferred, cexpr in cons.get(oid, []):
            if ctype == "p":
                pk = tuple(ckeys)
            elif ctype == "u":
                uniques.append(Unique(name=cname, columns=tuple(ckeys)))
            elif ctype == "c":
                checks.append(Check(name=cname, expression=cexpr))
            elif ctype == "f":
                fks.append(ForeignKey(name=cname, columns=tuple(ckeys), ref_schema=fschema, ref_table=ftable,
                                      ref_columns=tuple(fkeys), on_delete=_ACTIONS.get(deltype, "NO ACTION"),
                                      on_update=_ACTIONS.get(updtype, "NO ACTION"), deferrable=bool(deferrable),
                                      initially_deferred=bool(deferred)))
        out.append(Table(
            schema=schema, name=name, columns=tuple(columns.get(oid, ())), primary_key=pk, uniques=tuple(uniques),
            checks=tuple(checks), foreign_keys=tuple(fks), indexes=tuple(idx.get(oid, ())),
            partitioned=kind == "p", partitions=tuple(parts or ()), replica_identity=ident,
            sequences=tuple(dict.fromkeys(sequences.get(oid, ())))))
    log.debug("introspected %d table(s) in %s", len(out), ", ".join(schemas))
    used = {c.domain for t in out for c in t.columns if c.domain}
    used_enums = {(c.type_name if not c.is_array else c.element_type) for t in out for c in t.columns
                  if c.enum_labels is not None}
    return Schema(
        tables=tuple(out),
        enums=tuple(e for e in types.enums.values() if e.schema in schemas or e.name in used_enums),
        domains=tuple(d for d in types.domains.values() if d.schema in schemas or d in used),
        views=tuple(views))


def parse_dump(sql_text: str) -> Schema:
    """Best-effort schema model from ``pg_dump --schema-only`` text (see translators/dump.py)."""

    return _parse(sql_text)
