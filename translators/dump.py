"""Best-effort schema model from ``pg_dump --schema-only`` text (sqlglot for CREATE TABLE).

Read: CREATE TABLE (columns, types, NOT NULL, DEFAULT, inline PRIMARY KEY),
CREATE TYPE ... AS ENUM, ALTER TABLE ... ADD CONSTRAINT (PRIMARY KEY, UNIQUE,
FOREIGN KEY, CHECK) and CREATE [UNIQUE] INDEX. Anything else that defines
schema (functions, triggers, policies, ...) becomes a finding; SET, SELECT,
COMMENT and OWNER statements are skipped. Prefer ``introspect`` on a live
database: the catalog is exact, a dump is parsed.
"""

from __future__ import annotations

import re
from dataclasses import replace

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.schema import Check, Column, Enum, ForeignKey, Index, Schema, Table, Unique

_TYPNAMES = {
    "integer": "int4", "int": "int4", "int4": "int4", "bigint": "int8", "int8": "int8", "smallint": "int2",
    "int2": "int2", "numeric": "numeric", "decimal": "numeric", "text": "text", "character varying": "varchar",
    "varchar": "varchar", "character": "bpchar", "char": "bpchar", "boolean": "bool", "bool": "bool",
    "timestamp with time zone": "timestamptz", "timestamptz": "timestamptz",
    "timestamp without time zone": "timestamp", "timestamp": "timestamp", "date": "date",
    "time without time zone": "time", "time": "time", "time with time zone": "timetz", "timetz": "timetz",
    "interval": "interval", "uuid": "uuid", "json": "json", "jsonb": "jsonb", "bytea": "bytea",
    "double precision": "float8", "real": "float4", "inet": "inet", "cidr": "cidr", "money": "money",
    "serial": "int4", "bigserial": "int8", "smallserial": "int2",
}
_SKIP = re.compile(r"^\s*(SET|SELECT|COMMENT|ALTER\s+\w+(\s+\w+)*\s+OWNER\s+TO|--|\\)", re.I)
_ENUM = re.compile(r"CREATE\s+TYPE\s+([\w.\"]+)\s+AS\s+ENUM\s*\((.*)\)\s*$", re.I | re.S)
_ALTER = re.compile(r"ALTER\s+TABLE\s+(?:ONLY\s+)?([\w.\"]+)\s+ADD\s+CONSTRAINT\s+([\w\"]+)\s+(.*)$", re.I | re.S)
_FK = re.compile(r"FOREIGN\s+KEY\s*\(([^)]*)\)\s*REFERENCES\s+([\w.\"]+)\s*\(([^)]*)\)(.*)$", re.I | re.S)
_INDEX = re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\s+([\w\"]+)\s+ON\s+(?:ONLY\s+)?([\w.\"]+)\s+USING\s+(\w+)\s*"
                    r"\((.*?)\)\s*(?:WHERE\s+(.*))?$", re.I | re.S)


def _unq(name: str) -> str:
    name = name.strip()
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _split_name(name: str) -> tuple[str, str]:
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', name)
    return (_unq(parts[0]), _unq(parts[1])) if len(parts) == 2 else ("public", _unq(parts[0]))


def _cols(text: str) -> tuple[str, ...]:
    return tuple(_unq(c) for c in re.findall(r'"(?:[^"]|"")*"|[^,\s]+', text))


def _statements(sql_text: str) -> list[str]:
    body = "\n".join(line for line in sql_text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body) if s.strip()]


def _column(node: exp.ColumnDef, enums: dict[str, Enum]) -> Column:
    kind = node.args.get("kind")
    pg_type = kind.sql(dialect="postgres").lower() if kind is not None else "text"
    base = re.sub(r"\(.*\)", "", pg_type).replace("[]", "").strip()
    is_array = pg_type.endswith("[]")
    enum = enums.get(base.split(".")[-1].strip('"'))
    typname = _TYPNAMES.get(base, enum.name if enum else base)
    not_null = default = None
    for c in node.constraints:
        if isinstance(c.kind, exp.NotNullColumnConstraint) and not c.kind.args.get("allow_null"):
            not_null = True
        elif isinstance(c.kind, exp.DefaultColumnConstraint):
            default = c.kind.this.sql(dialect="postgres")
        elif isinstance(c.kind, exp.PrimaryKeyColumnConstraint):
            not_null = True
    typmod = -1
    match = re.match(r"numeric\((\d+)(?:,\s*(\d+))?\)", pg_type)
    if match:
        typmod = (int(match.group(1)) << 16 | int(match.group(2) or 0)) + 4
    return Column(name=node.name, pg_type=pg_type, type_name=("_" + typname) if is_array else typname,
                  typmod=typmod, not_null=bool(not_null), default=default, is_array=is_array,
                  array_ndims=1 if is_array else 0, element_type=typname if is_array else None,
                  enum_labels=enum.labels if enum else None)


def parse_dump(sql_text: str) -> Schema:
    """The schema model of a ``pg_dump --schema-only`` file, with findings for what was not read."""
    findings: list[Finding] = []
    enums: dict[str, Enum] = {}
    tables: dict[str, Table] = {}
    for stmt in _statements(sql_text):
        if _SKIP.match(stmt):
            continue
        if (m := _ENUM.match(stmt)) is not None:
            schema, name = _split_name(m.group(1))
            enums[name] = Enum(schema, name, tuple(v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'",
                                                                                             m.group(2))))
        elif re.match(r"CREATE\s+(UNLOGGED\s+)?TABLE", stmt, re.I):
            try:
                tree = sqlglot.parse_one(stmt, read="postgres")
            except (ParseError, TokenError) as exc:
                findings.append(Finding(Level.WARN, "dump-unparsed", stmt[:60], str(exc).splitlines()[0]))
                continue
            target = tree.this
            tbl = target.this if isinstance(target, exp.Schema) else target
            schema = tbl.db or "public"
            cols = tuple(_column(c, enums) for c in target.expressions if isinstance(c, exp.ColumnDef))
            pk = tuple(c.name for c in target.expressions if isinstance(c, exp.ColumnDef)
                       and any(isinstance(k.kind, exp.PrimaryKeyColumnConstraint) for k in c.constraints))
            tables[f"{schema}.{tbl.name}"] = Table(schema, tbl.name, cols, primary_key=pk,
                                                   partitioned="PARTITION BY" in stmt.upper())
        elif (m := _ALTER.match(stmt)) is not None:
            schema, name = _split_name(m.group(1))
            table = tables.get(f"{schema}.{name}")
            if table is None:
                findings.append(Finding(Level.WARN, "dump-unknown-table", f"{schema}.{name}", stmt[:80]))
                continue
            cname, rest = _unq(m.group(2)), m.group(3).strip()
            if (pk_match := re.match(r"PRIMARY\s+KEY\s*\((.*)\)", rest, re.I)) is not None:
                table = replace(table, primary_key=_cols(pk_match.group(1)))
            elif (uq := re.match(r"UNIQUE\s*\((.*)\)", rest, re.I)) is not None:
                table = replace(table, uniques=(*table.uniques, Unique(cname, _cols(uq.group(1)))))
            elif (fk := _FK.match(rest)) is not None:
                rs, rt = _split_name(fk.group(2))
                tail = fk.group(4).upper()
                on_delete = re.search(r"ON DELETE (CASCADE|RESTRICT|SET NULL|SET DEFAULT|NO ACTION)", tail)
                on_update = re.search(r"ON UPDATE (CASCADE|RESTRICT|SET NULL|SET DEFAULT|NO ACTION)", tail)
                table = replace(table, foreign_keys=(*table.foreign_keys, ForeignKey(
                    cname, _cols(fk.group(1)), rs, rt, _cols(fk.group(3)),
                    on_delete.group(1) if on_delete else "NO ACTION", on_update.group(1) if on_update else "NO ACTION")))
            elif rest.upper().startswith("CHECK"):
                table = replace(table, checks=(*table.checks, Check(cname, rest[5:].strip())))
            else:
                findings.append(Finding(Level.WARN, "dump-constraint", f"{schema}.{name}.{cname}", rest[:80]))
            tables[table.qualified] = table
        elif (m := _INDEX.match(stmt)) is not None:
            schema, name = _split_name(m.group(3))
            table = tables.get(f"{schema}.{name}")
            if table is None:
                continue
            keys = [k.strip() for k in re.split(r",(?![^(]*\))", m.group(5))]
            expr = tuple(not re.fullmatch(r'"(?:[^"]|"")*"|\w+', re.sub(r"\s+(DESC|ASC)$", "", k, flags=re.I))
                         for k in keys)
            desc = tuple(k.upper().endswith(" DESC") for k in keys)
            clean = tuple(_unq(re.sub(r"\s+(DESC|ASC)$", "", k, flags=re.I)) if not e
                          else re.sub(r"\s+(DESC|ASC)$", "", k, flags=re.I) for k, e in zip(keys, expr))
            pred = m.group(6).strip() if m.group(6) else None
            tables[table.qualified] = replace(table, indexes=(*table.indexes, Index(
                _unq(m.group(2)), clean, unique=bool(m.group(1)), predicate=pred, expressions=expr,
                method=m.group(4).lower(), descending=desc)))
        elif re.match(r"(CREATE|ALTER)\b", stmt, re.I) and not re.match(
                r"(CREATE\s+(SEQUENCE|SCHEMA|EXTENSION)|ALTER\s+(SEQUENCE|TABLE\s+.*\s+ALTER\s+COLUMN))", stmt, re.I):
            findings.append(Finding(Level.INFO, "dump-skipped", " ".join(stmt.split())[:60],
                                    "statement not read from the dump"))
    return Schema(tables=tuple(tables.values()), enums=tuple(enums.values()), findings=tuple(findings))
