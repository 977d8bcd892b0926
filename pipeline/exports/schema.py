"""Read a SQLite file's schema for export: user tables in foreign-key-safe order, indexes, views, triggers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import apsw

from pg2edge.pipeline.exports.errors import ExportError
from pg2edge.translators.quoting import quote_ident

INTERNAL_PREFIX = "_pg2edge_"


def is_internal(name: str) -> bool:
    """pg2edge's own tables (state, retry queue, DLQ, ...) never leave the replica."""
    return name.startswith(INTERNAL_PREFIX)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    sql: str
    virtual: bool
    without_rowid: bool
    columns: list[str]  # insertable columns (generated and hidden columns left out)
    key: list[str]  # primary-key columns, empty when the rowid is the key
    parents: list[str]  # tables this one references (foreign keys), itself excluded
    self_referencing: bool


@dataclass(frozen=True, slots=True)
class Schema:
    tables: list[Table]  # parents before children
    cyclic: bool  # some foreign keys form a cycle (or a table references itself)
    others: list[tuple[str, str, str]]  # (type, name, sql) of indexes, views, triggers in creation order
    excluded: list[str]  # internal tables left out


def check_output(target: Path, output: Path, overwrite: bool) -> None:
    """Refuse to overwrite the replica itself, an existing file (unless asked) or write into a missing directory."""
    if output.resolve() == target.resolve():
        raise ExportError(f"the export would overwrite the replica itself ({target}); choose another --output")
    if output.exists() and not overwrite:
        raise ExportError(f"{output} already exists; remove it or pass --force to replace it")
    if not output.parent.is_dir():
        raise ExportError(f"directory {output.parent} does not exist")


def open_readonly(path: str | Path) -> apsw.Connection:
    if not Path(path).is_file():
        raise ExportError(f"replica file {path} does not exist")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(5000)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except apsw.Error as exc:
        raise ExportError(f"cannot read {path} as SQLite: {exc}") from exc
    return conn


def read_schema(conn: apsw.Connection) -> Schema:
    kinds = {name: kind for _, name, kind, *_ in conn.execute("PRAGMA main.table_list")}
    rows = cast(list[tuple[str, str, str, str]],
                conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
                             "ORDER BY rowid").fetchall())
    excluded = sorted(n for t, n, _, _ in rows if t == "table" and is_internal(n))
    tables: dict[str, Table] = {}
    others: list[tuple[str, str, str]] = []
    for kind, name, tbl_name, sql in rows:
        if is_internal(tbl_name) or name.startswith("sqlite_"):
            continue
        if kind == "table":
            if kinds.get(name) == "shadow":
                continue  # FTS5 and friends rebuild these from the virtual table
            tables[name] = _table(conn, name, sql, virtual=kinds.get(name) == "virtual")
        else:
            others.append((kind, name, sql))
    ordered, cyclic = _parents_first(tables)
    return Schema(tables=ordered, cyclic=cyclic, others=others, excluded=excluded)


def _table(conn: apsw.Connection, name: str, sql: str, *, virtual: bool) -> Table:
    q = quote_ident(name)
    info = cast(list[tuple[int, str, str, int, Any, int, int]],  # cid, name, type, notnull, dflt, pk, hidden
                conn.execute(f"PRAGMA main.table_xinfo({q})").fetchall())
    columns = [row[1] for row in info if row[6] == 0]
    key = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
    listed = conn.execute("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (name,)).fetchone()
    assert listed is not None  # the table was just read from sqlite_schema
    without_rowid = bool(listed[0])
    refs = {row[2] for row in conn.execute(f"PRAGMA main.foreign_key_list({q})")}
    return Table(name=name, sql=sql, virtual=virtual, without_rowid=without_rowid, columns=columns,
                 key=key, parents=sorted(refs - {name}), self_referencing=name in refs)


def _parents_first(tables: dict[str, Table]) -> tuple[list[Table], bool]:
    """Topological order (parents first, otherwise schema order); tables in a cycle keep schema order."""
    done: list[Table] = []
    placed: set[str] = set()
    pending = list(tables.values())
    cyclic = any(t.self_referencing for t in pending)
    while pending:
        ready = [t for t in pending if all(p in placed or p not in tables for p in t.parents)]
        if not ready:  # a cycle: take the first remaining table and rely on deferred checks
            cyclic = True
            ready = [pending[0]]
        for table in ready:
            done.append(table)
            placed.add(table.name)
        pending = [t for t in pending if t.name not in placed]
    return done, cyclic
