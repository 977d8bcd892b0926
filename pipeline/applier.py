"""Apply batches of source Transactions to a SQLite replica, exactly once, in commit order.

One SQLite transaction per batch: the rows and the batch's last commit LSN are
written together (``_pg2edge_state``), so a crash leaves either all of a batch
or none of it, and a restart skips every transaction at or below the stored
commit LSN. Acknowledge ``ApplyResult.position.end_lsn`` to PostgreSQL only
after ``apply`` returns.

Values go through the table's encoder (``TableMapping.encode``: the value
codec's ``row_codec(table).encode_text``), never elsewhere. Unchanged TOAST
columns are never written. The replica's primary key (from the SQLite table
itself) is the conflict target; a table without one is matched on all the
columns of the old row (REPLICA IDENTITY FULL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import apsw

from pg2edge.pipeline import drift, state, targetfile
from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.events import UNCHANGED_TOAST, ChangeEvent, Op, Row, Transaction
from pg2edge.pipeline.pgoutput import Column, Relation
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

Encoder = Callable[[str, "str | None"], Any]


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


@dataclass(slots=True)
class ApplyResult:
    applied: int = 0  # transactions
    skipped: int = 0  # transactions at or below the stored position
    rows: int = 0  # row events applied
    paused_events: int = 0  # events of paused tables not applied
    findings: list[Finding] = field(default_factory=list)
    position: state.Position | None = None


@dataclass(slots=True)
class _Target:
    table: str
    columns: list[str]
    pk: tuple[str, ...]


def open_replica(path: str | Path, *, busy_timeout_ms: int = 5000, synchronous: str = "FULL") -> apsw.Connection:
    """Open a replica file in WAL mode with the state table present (errors name the file: targetfile)."""
    path = targetfile.check_replica_file(path).path  # a corrupt file or another app's database: named, untouched
    conn = None
    try:
        conn = apsw.Connection(str(path), statementcachesize=512)
        conn.setbusytimeout(busy_timeout_ms)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous if synchronous in ('FULL', 'NORMAL', 'EXTRA') else 'FULL'}")
        state.ensure_state_table(conn)
    except apsw.Error as exc:
        if conn is not None:
            conn.close()
        raise targetfile.sqlite_error(path, exc) from None
    return conn


class Applier:
    """Applies batches to one replica. ``mappings`` is keyed by (source schema, source table)."""

    def __init__(self, conn: apsw.Connection, mappings: Mapping[tuple[str, str], TableMapping]) -> None:
        self.conn = conn
        self.mappings = dict(mappings)
        self._targets: dict[str, _Target] = {}
        self._sql: dict[tuple[Any, ...], str] = {}
        state.ensure_state_table(conn)

    @property
    def position(self) -> state.Position | None:
        return state.read_position(self.conn)

    # -- batches ----------------------------------------------------------------
    def apply(self, batch: Sequence[Transaction], *, kafka: dict[str, Any] | None = None,
              check_lsn: bool = True) -> ApplyResult:
        """Apply whole transactions in one SQLite transaction; returns counts and the new position.

        ``kafka`` (topic, partition, offset of the batch's last record) is stored in the
        position with the data; ``check_lsn=False`` applies snapshot rows whose LSN is not a commit.
        """
        result = ApplyResult()
        pos = state.read_position(self.conn)
        last = pos.commit_lsn if pos else -1
        todo = []
        for txn in batch:
            if check_lsn and txn.commit_lsn <= last:
                result.skipped += 1
                continue
            todo.append(txn)
            last = txn.commit_lsn
        result.position = pos
        if not todo:
            return result
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            tables = state.read_tables(self.conn)
            for txn in todo:
                self._apply_txn(txn, tables, result)
            final = todo[-1]
            result.position = state.Position(
                commit_lsn=final.commit_lsn, end_lsn=final.end_lsn, xid=final.xid,
                kafka=kafka if kafka is not None else (pos.kafka if pos else None),
                commit_ts_ms=final.commit_ts, watermark_lsn=max(final.end_lsn, (pos.watermark_lsn or 0) if pos else 0))
            state.write_position(self.conn, result.position)
            self.before_commit(result)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # SQLITE_FULL (and others) may have rolled back already
                self.conn.execute("ROLLBACK")
            self._targets.clear()  # an ALTER TABLE may have been rolled back
            raise
        result.applied = len(todo)
        return result

    def before_commit(self, result: ApplyResult) -> None:
        """Hook: runs inside the batch's SQLite transaction after the position is written."""

    def apply_repairs(self, events: Sequence[ChangeEvent]) -> int:
        """Apply row events (validator repairs) without touching the stored position.

        Runs inside the caller's open transaction when there is one (so the caller can hold the write
        lock while it reads the source), else in its own; returns the number of events applied.
        """
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            for ev in events:
                self._event(ev)
            if own:
                self.conn.execute("COMMIT")
        except BaseException:
            if own:
                self.conn.execute("ROLLBACK")
            self._targets.clear()
            raise
        return len(events)

    def _apply_txn(self, txn: Transaction, tables: dict[str, state.TableState], result: ApplyResult) -> None:
        for rel in txn.relations:
            self._relation(rel, txn, tables, result)
        for ev in txn.events:
            name = f"{ev.source.schema}.{ev.source.table}"
            ts = tables.get(name)
            if ts is not None and ts.paused:
                result.paused_events += 1
                continue
            self._event(ev)
            result.rows += 1

    # -- schema drift -------------------------------------------------------------
    def _relation(self, rel: Relation, txn: Transaction, tables: dict[str, state.TableState],
                  result: ApplyResult) -> None:
        name = f"{rel.schema}.{rel.name}"
        if (rel.schema, rel.name) not in self.mappings:
            # PostgreSQL also describes a partition whose rows it publishes through the root
            # (publish_via_partition_root); only a row event for an unmapped table is an error.
            log.debug("relation %s has no replica table; ignored unless it carries rows", name)
            return
        ts = tables.get(name) or state.TableState(table=name)
        if ts.paused:
            return
        mapping = self._mapping(rel.schema, rel.name)
        target = self._target(mapping.target)
        present = list(target.columns)
        if mapping.skip:  # not copied by design: never "added" to the replica
            present += [c.name for c in rel.columns if mapping.skip(c.name)]
        d = drift.compare(rel, ts.columns, present)
        for f in d.findings:
            log.log(logging.ERROR if f.level >= Level.ERROR else logging.WARNING, "schema drift: %s", f)
        result.findings.extend(d.findings)
        if d.pause:
            reason = "; ".join(str(f) for f in d.findings if f.level >= Level.ERROR)
            ts = replace(ts, paused=True, pause_reason=reason, paused_at_lsn=txn.commit_lsn)
        else:
            for col in d.added:
                decl = mapping.column_type(col) if mapping.column_type else ""
                self.conn.execute(f"ALTER TABLE {quote_ident(mapping.target)} ADD COLUMN "
                                  f"{quote_ident(col.name)} {decl}".rstrip())
            if d.added:
                self._targets.pop(mapping.target, None)
            ts = replace(ts, columns=drift.columns_record(rel))
        if ts != tables.get(name):
            state.write_table(self.conn, ts)
            tables[name] = ts

    # -- rows ---------------------------------------------------------------------
    def _mapping(self, schema: str, table: str) -> TableMapping:
        mapping = self.mappings.get((schema, table))
        if mapping is None:
            raise ApplyError(f"no replica table is mapped for source table {schema}.{table}")
        return mapping

    def _target(self, table: str) -> _Target:
        tgt = self._targets.get(table)
        if tgt is None:
            info = self.conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
            if not info:
                raise ApplyError(f"replica table {table!r} does not exist")
            pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            tgt = self._targets[table] = _Target(table, [r[1] for r in info], pk)
        return tgt

    def _event(self, ev: ChangeEvent) -> None:
        mapping = self._mapping(ev.source.schema, ev.source.table)
        tgt = self._target(mapping.target)
        if mapping.skip:
            skip = mapping.skip
            ev = replace(ev, before=None if ev.before is None else {c: v for c, v in ev.before.items() if not skip(c)},
                         after=None if ev.after is None else {c: v for c, v in ev.after.items() if not skip(c)})
        try:
            if ev.op in (Op.CREATE, Op.READ):
                assert ev.after is not None
                self._upsert(tgt, mapping, ev.after)
            elif ev.op is Op.UPDATE:
                self._update(tgt, mapping, ev)
            elif ev.op is Op.DELETE:
                assert ev.before is not None
                self._delete(tgt, mapping, ev.before)
            elif ev.op is Op.TRUNCATE:
                self.conn.execute(f"DELETE FROM {quote_ident(tgt.table)}")
        except apsw.Error as exc:
            raise ApplyError(f"{ev.op.name.lower()} on {tgt.table} key {dict(ev.key)!r} failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    def _values(self, mapping: TableMapping, row: Row, cols: Sequence[str]) -> list[Any]:
        enc = mapping.encode
        return [enc(c, row[c]) for c in cols]  # type: ignore[arg-type]

    def _upsert(self, tgt: _Target, mapping: TableMapping, row: Row) -> None:
        cols = tuple(c for c, v in row.items() if v is not UNCHANGED_TOAST)
        key = ("upsert", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            q = quote_ident
            sql = (f"INSERT INTO {q(tgt.table)} ({', '.join(map(q, cols))}) "
                   f"VALUES ({', '.join('?' * len(cols))})")
            if tgt.pk:
                rest = [c for c in cols if c not in tgt.pk]
                sql += f" ON CONFLICT ({', '.join(map(q, tgt.pk))}) DO " + (
                    "UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in rest) if rest else "NOTHING")
            self._sql[key] = sql
        self.conn.execute(sql, self._values(mapping, row, cols))

    def _where(self, tgt: _Target, cols: Sequence[str]) -> str:
        return " AND ".join(f"{quote_ident(c)} IS ?" for c in cols)

    def _key_cols(self, tgt: _Target, row: Row, what: str) -> tuple[str, ...]:
        cols = tgt.pk or tuple(c for c in row if c in tgt.columns)
        missing = [c for c in cols if c not in row or row[c] is UNCHANGED_TOAST]
        if missing:
            raise ApplyError(f"{what} on {tgt.table}: the change lacks key column(s) {missing}")
        return cols

    def _delete(self, tgt: _Target, mapping: TableMapping, before: Row) -> None:
        cols = self._key_cols(tgt, before, "delete")
        key = ("delete", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            t = quote_ident(tgt.table)
            where = self._where(tgt, cols)
            sql = (f"DELETE FROM {t} WHERE {where}" if tgt.pk else
                   f"DELETE FROM {t} WHERE rowid = (SELECT rowid FROM {t} WHERE {where} LIMIT 1)")
            self._sql[key] = sql
        self.conn.execute(sql, self._values(mapping, before, cols))

    def _update(self, tgt: _Target, mapping: TableMapping, ev: ChangeEvent) -> None:
        after, before = ev.after, ev.before
        assert after is not None
        if before is not None and any(v is UNCHANGED_TOAST for v in after.values()):
            # REPLICA IDENTITY FULL sends the whole old row: take unchanged TOAST values from it
            after = {c: before[c] if v is UNCHANGED_TOAST and c in before and before[c] is not UNCHANGED_TOAST
                     else v for c, v in after.items()}
        if not tgt.pk:  # REPLICA IDENTITY FULL without a key: replace one matching row
            if before is None:
                raise ApplyError(f"update on keyless {tgt.table} without the old row (needs REPLICA IDENTITY FULL)")
            self._delete(tgt, mapping, before)
            self._upsert(tgt, mapping, after)
            return
        key_changed = before is not None and any(
            c in before and before[c] != after.get(c) for c in tgt.pk)
        toast = [c for c, v in after.items() if v is UNCHANGED_TOAST]
        if key_changed:
            assert before is not None
            row = dict(after)
            if toast:  # carry unchanged TOAST values over from the old row
                kept = self.conn.execute(
                    f"SELECT {', '.join(map(quote_ident, toast))} FROM {quote_ident(tgt.table)} "
                    f"WHERE {self._where(tgt, tgt.pk)}", self._values(mapping, before, tgt.pk)).fetchone()
                if kept is None:
                    raise ApplyError(f"update of {tgt.table} key {dict(before)!r}: old row missing, "
                                     f"cannot carry unchanged TOAST column(s) {toast}")
                self._delete(tgt, mapping, before)
                self._upsert(tgt, mapping, {c: v for c, v in row.items() if v is not UNCHANGED_TOAST})
                sets = ", ".join(f"{quote_ident(c)} = ?" for c in toast)
                self.conn.execute(f"UPDATE {quote_ident(tgt.table)} SET {sets} WHERE {self._where(tgt, tgt.pk)}",
                                  [*kept, *self._values(mapping, after, tgt.pk)])
                return
            self._delete(tgt, mapping, before)
            self._upsert(tgt, mapping, row)
            return
        if not toast:
            self._upsert(tgt, mapping, after)
            return
        cols = tuple(c for c, v in after.items() if v is not UNCHANGED_TOAST and c not in tgt.pk)
        if not cols:
            return
        key = ("update", tgt.table, cols)
        sql = self._sql.get(key)
        if sql is None:
            sets = ", ".join(f"{quote_ident(c)} = ?" for c in cols)
            sql = f"UPDATE {quote_ident(tgt.table)} SET {sets} WHERE {self._where(tgt, tgt.pk)}"
            self._sql[key] = sql
        self.conn.execute(sql, [*self._values(mapping, after, cols), *self._values(mapping, after, tgt.pk)])
        if self.conn.changes() == 0:
            raise ApplyError(f"update of {tgt.table} key {dict(ev.key)!r}: row missing on the replica, "
                             f"cannot fill unchanged TOAST column(s) {toast}")
