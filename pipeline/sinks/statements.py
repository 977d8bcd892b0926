"""One way to turn a row change into SQL: the statement planner every SQL sink executes.

``Planner.plan(event, mapping, target)`` returns the statements (SQL text with
``?`` placeholders and the bound values, encoded by the table's codec) that
apply one ``ChangeEvent`` to a SQLite-family table: an upsert on the replica's
primary key, an UPDATE of the changed columns, a DELETE, or a TRUNCATE as
``DELETE FROM``. The SQLite file sink runs them with apsw; the libSQL (Hrana)
and D1 sinks send them in their atomic batches. Nothing here touches a
connection, so every target applies a change the same way.

Rules (unchanged from the applier they came from):

* values go through ``TableMapping.encode`` (the value codec), nowhere else;
* an unchanged TOAST column (``UNCHANGED_TOAST``) is never written: an UPDATE
  sets only the columns it has, and a key change carries the old row's value
  over inside SQL (``INSERT ... SELECT`` from the old row), so no read is needed;
* a table without a primary key is matched on every column of the old row
  (REPLICA IDENTITY FULL) and one matching row is replaced;
* columns the codec does not copy (``TableMapping.skip``) are dropped first.

A statement with ``must_change`` set must change a row; the executor raises
:class:`~pg2edge.pipeline.errors.ApplyError` with that text when it changed none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.events import UNCHANGED_TOAST, ChangeEvent, Op, Row
from pg2edge.pipeline.sources.pgoutput import Column
from pg2edge.translators.quoting import quote_ident

Encoder = Callable[[str, "str | None"], Any]
ManyEncoder = Callable[[tuple[str, ...], Sequence["str | None"]], tuple[Any, ...]]


def _identity(column: str, text: str | None) -> Any:
    return text


@dataclass(frozen=True, slots=True)
class TableMapping:
    """Where one source table goes and how its values are encoded.

    ``column_type(column)`` gives the declared SQLite type used when a column
    added on the source is added to the replica (the codec's type rules).
    """

    target: str
    encode: Encoder = _identity
    column_type: Callable[[Column], str] | None = None
    skip: Callable[[str], bool] | None = None  # columns the codec does not copy (e.g. tsvector)
    reshape: Callable[[Any], None] | None = None  # a schema change gave the source table a new shape (a Table)
    # ``encode`` of several columns at once (the codec's per-column-set encoder): the same values, faster
    encode_many: ManyEncoder | None = None


@dataclass(frozen=True, slots=True)
class TargetTable:
    """A replica table as the target holds it: its columns and primary key (empty: none)."""

    table: str
    columns: tuple[str, ...]
    pk: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: tuple[Any, ...]
    must_change: str | None = None  # the error when the statement changed no row


def target_from_table_info(table: str, info: Sequence[Sequence[Any]]) -> TargetTable:
    """A TargetTable from the rows of ``PRAGMA table_info`` (cid, name, type, notnull, dflt, pk)."""
    if not info:
        raise ApplyError(f"replica table {table!r} does not exist")
    pk = tuple(str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
    return TargetTable(table, tuple(str(r[1]) for r in info), pk)


_new = object.__new__
_ST_SQL, _ST_PARAMS, _ST_MUST = (Statement.__dict__[f].__set__ for f in ("sql", "params", "must_change"))


def _statement(sql: str, params: tuple[Any, ...], must_change: str | None = None) -> Statement:
    """``Statement(...)`` built without the frozen __init__ (one per change: the same object, cheaper)."""
    st = _new(Statement)
    _ST_SQL(st, sql)
    _ST_PARAMS(st, params)
    _ST_MUST(st, must_change)
    return st


def _kept(skip: Callable[[str], bool], row: Row | None) -> Row | None:
    """``row`` without the columns the codec does not copy (the same mapping when it has none of them)."""
    if row is None or not any(map(skip, row)):
        return row
    return {c: v for c, v in row.items() if not skip(c)}


class Planner:
    """Plans the statements of row changes; caches the SQL text per table, operation and column set."""

    def __init__(self) -> None:
        self._sql: dict[tuple[Any, ...], str] = {}

    def plan(self, ev: ChangeEvent, mapping: TableMapping, tgt: TargetTable) -> list[Statement]:
        op, before, after = ev.op, ev.before, ev.after
        skip = mapping.skip
        if skip:
            before, after = _kept(skip, before), _kept(skip, after)
        if op is Op.CREATE or op is Op.READ:
            if after is None:
                raise ApplyError(f"{op.name.lower()} on {tgt.table} key {dict(ev.key)!r} has no row")
            return [self._upsert(tgt, mapping, after)]
        if op is Op.UPDATE:
            return self._update(tgt, mapping, ev, before, after)
        if op is Op.DELETE:
            if before is None:
                raise ApplyError(f"delete on {tgt.table} key {dict(ev.key)!r} has no old row")
            return [self._delete(tgt, mapping, before)]
        return [Statement(f"DELETE FROM {quote_ident(tgt.table)}", ())]  # TRUNCATE

    # -- pieces ---------------------------------------------------------------------
    @staticmethod
    def _values(mapping: TableMapping, row: Row, cols: tuple[str, ...]) -> tuple[Any, ...]:
        many = mapping.encode_many
        if many is not None:
            return many(cols, [row[c] for c in cols])  # type: ignore[misc]
        enc = mapping.encode
        return tuple(enc(c, row[c]) for c in cols)  # type: ignore[arg-type]

    @staticmethod
    def _where(cols: Sequence[str], *, key: bool = True) -> str:
        """``"a" = ? AND ...`` on a primary key (never NULL; every engine uses the index for ``=``; tursodb
        scans the table for ``IS``); ``"a" IS ? AND ...`` when matching a keyless table's whole old row."""
        op = "=" if key else "IS"
        return " AND ".join(f"{quote_ident(c)} {op} ?" for c in cols)

    def _conflict(self, tgt: TargetTable, cols: Sequence[str]) -> str:
        if not tgt.pk:
            return ""
        q = quote_ident
        rest = [c for c in cols if c not in tgt.pk]
        return f" ON CONFLICT ({', '.join(map(q, tgt.pk))}) DO " + (
            "UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in rest) if rest else "NOTHING")

    def _upsert(self, tgt: TargetTable, mapping: TableMapping, row: Row) -> Statement:
        cols = tuple(row) if UNCHANGED_TOAST not in row.values() else tuple(
            c for c, v in row.items() if v is not UNCHANGED_TOAST)
        key = ("upsert", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            q = quote_ident
            sql = self._sql[key] = (f"INSERT INTO {q(tgt.table)} ({', '.join(map(q, cols))}) "
                                    f"VALUES ({', '.join('?' * len(cols))})" + self._conflict(tgt, cols))
        return _statement(sql, self._values(mapping, row, cols))

    def _key_cols(self, tgt: TargetTable, row: Row, what: str) -> tuple[str, ...]:
        cols = tgt.pk or tuple(c for c in row if c in tgt.columns)
        missing = [c for c in cols if c not in row or row[c] is UNCHANGED_TOAST]
        if missing:
            raise ApplyError(f"{what} on {tgt.table}: the change lacks key column(s) {missing}")
        return cols

    def _delete(self, tgt: TargetTable, mapping: TableMapping, before: Row) -> Statement:
        cols = self._key_cols(tgt, before, "delete")
        key = ("delete", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            t = quote_ident(tgt.table)
            where = self._where(cols, key=bool(tgt.pk))
            sql = self._sql[key] = (f"DELETE FROM {t} WHERE {where}" if tgt.pk else
                                    f"DELETE FROM {t} WHERE rowid = (SELECT rowid FROM {t} WHERE {where} LIMIT 1)")
        return _statement(sql, self._values(mapping, before, cols))

    def _update(self, tgt: TargetTable, mapping: TableMapping, ev: ChangeEvent, before: Row | None,
                after: Row | None) -> list[Statement]:
        if after is None:
            raise ApplyError(f"update on {tgt.table} key {dict(ev.key)!r} has no new row")
        has_toast = UNCHANGED_TOAST in after.values()
        if before is not None and has_toast:
            # REPLICA IDENTITY FULL sends the whole old row: take unchanged TOAST values from it
            after = {c: before[c] if v is UNCHANGED_TOAST and c in before and before[c] is not UNCHANGED_TOAST
                     else v for c, v in after.items()}
        if not tgt.pk:  # REPLICA IDENTITY FULL without a key: replace one matching row
            if before is None:
                raise ApplyError(f"update on keyless {tgt.table} without the old row (needs REPLICA IDENTITY FULL)")
            return [self._delete(tgt, mapping, before), self._upsert(tgt, mapping, after)]
        key_changed = before is not None and any(c in before and before[c] != after.get(c) for c in tgt.pk)
        toast = tuple(c for c, v in after.items() if v is UNCHANGED_TOAST) if has_toast else ()
        if key_changed:
            assert before is not None
            if toast:
                return [self._move_with_toast(tgt, mapping, before, after, toast),
                        self._delete(tgt, mapping, before)]
            return [self._delete(tgt, mapping, before), self._upsert(tgt, mapping, after)]
        if not toast:
            return [self._upsert(tgt, mapping, after)]
        cols = tuple(c for c, v in after.items() if v is not UNCHANGED_TOAST and c not in tgt.pk)
        if not cols:
            return []
        key = ("update", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            sets = ", ".join(f"{quote_ident(c)} = ?" for c in cols)
            sql = self._sql[key] = f"UPDATE {quote_ident(tgt.table)} SET {sets} WHERE {self._where(tgt.pk)}"
        return [Statement(sql, (*self._values(mapping, after, cols), *self._values(mapping, after, tgt.pk)),
                          must_change=f"update of {tgt.table} key {dict(ev.key)!r}: row missing on the replica, "
                                      f"cannot fill unchanged TOAST column(s) {list(toast)}")]

    def _move_with_toast(self, tgt: TargetTable, mapping: TableMapping, before: Row, after: Row,
                         toast: tuple[str, ...]) -> Statement:
        """The new row, its unchanged TOAST columns copied from the old row inside SQL."""
        cols = tuple(c for c, v in after.items() if v is not UNCHANGED_TOAST)
        key = ("move", tgt.table, cols, toast)
        sql = self._sql.get(key)
        if sql is None:
            q = quote_ident
            sql = self._sql[key] = (
                f"INSERT INTO {q(tgt.table)} ({', '.join(map(q, (*cols, *toast)))}) "
                f"SELECT {', '.join(['?'] * len(cols) + [q(c) for c in toast])} FROM {q(tgt.table)} "
                f"WHERE {self._where(tgt.pk)}" + self._conflict(tgt, (*cols, *toast)))
        return Statement(sql, (*self._values(mapping, after, cols), *self._values(mapping, before, tgt.pk)),
                         must_change=f"update of {tgt.table} key {dict(before)!r}: old row missing, "
                                     f"cannot carry unchanged TOAST column(s) {list(toast)}")
