"""The SQLite side of a validation: one read transaction (a stable WAL snapshot) on the replica."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apsw

from pg2edge.errors import TargetError
from pg2edge.pipeline import state
from pg2edge.pipeline.d1.client import exact_column, exact_value
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.status import open_readonly
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.quoting import quote_ident
from pg2edge.validators.canonical import MOD, register_sqlite, row_digest
from pg2edge.validators.source import Key, KeyRange, TableSide


class ReplicaSnapshot:
    """``BEGIN`` + a first read pins the replica's WAL snapshot until :meth:`close`."""

    def __init__(self, target: str | Path) -> None:
        if not Path(target).is_file():
            raise TargetError(f"replica {target} does not exist")
        self.conn = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
        self.conn.setbusytimeout(5000)
        register_sqlite(self.conn)
        self.conn.execute("BEGIN")
        self.position = state.read_position(self.conn)

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.close()

    max_params = 30000  # bound values per statement (SQLite's default limit is 32766)

    @staticmethod
    def open(target: Any) -> ReplicaSnapshot:
        """The reader for a target: this class for a file, :class:`RemoteReplicaSnapshot` for a URL."""

        if is_remote(target) and getattr(target, "kind", None) == "d1":
            return D1ReplicaSnapshot(target)
        return RemoteReplicaSnapshot(target) if is_remote(target) else ReplicaSnapshot(target)

    def __enter__(self) -> ReplicaSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def table_name(side: TableSide) -> str:
        return quote_ident(sqlite_table_name(side.table.schema, side.table.name))

    def count(self, side: TableSide) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {self.table_name(side)}").fetchone()
        assert row is not None  # count(*) always returns one row
        return int(row[0])

    def _where(self, side: TableSide, rng: KeyRange) -> tuple[str, list[Any]]:
        if not side.ordered:
            return "1", []
        row = "(" + ", ".join(quote_ident(k) for k in side.key) + ")"
        marks = "(" + ", ".join("?" for _ in side.key) + ")"
        parts, params = [], []
        if rng.lo is not None:
            parts.append(f"{row} > {marks}")
            params += list(rng.lo)
        if rng.hi is not None:
            parts.append(f"{row} <= {marks}")
            params += list(rng.hi)
        return (" AND ".join(parts) or "1"), params

    def _col(self, column: str, prefix: str = "") -> str:
        """The select expression of one column (a remote transport may need to wrap it)."""
        return prefix + quote_ident(column)

    def _fix(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A fetched row as the replica holds it (undoes what :meth:`_col` wrapped)."""
        return tuple(row)

    def _cols(self, side: TableSide) -> str:
        return ", ".join(self._col(c) for c in side.codec.columns)

    def range_checksum(self, side: TableSide, rng: KeyRange) -> tuple[int, int]:
        where, params = self._where(side, rng)
        row = self.conn.execute(f"SELECT count(*), pg2edge_chunksum({self._cols(side)}) FROM {self.table_name(side)} "
                                f"WHERE {where}", params).fetchone()
        assert row is not None  # an aggregate without GROUP BY always returns one row
        return int(row[0]), int(row[1] or 0) % MOD

    def range_digests(self, side: TableSide, rng: KeyRange) -> dict[Key, int]:
        where, params = self._where(side, rng)
        out = {}
        for fetched in self.conn.execute(f"SELECT {self._cols(side)} FROM {self.table_name(side)} WHERE {where}",
                                         params):
            row = self._fix(fetched)
            out[side.key_of(row)] = row_digest(row)
        return out

    def split_key(self, side: TableSide, rng: KeyRange, offset: int) -> Key | None:
        where, params = self._where(side, rng)
        keys = ", ".join(quote_ident(k) for k in side.key)
        row = self.conn.execute(f"SELECT {', '.join(self._col(k) for k in side.key)} FROM {self.table_name(side)} "
                                f"WHERE {where} ORDER BY {keys} LIMIT 1 OFFSET ?", [*params, offset]).fetchone()
        return None if row is None else self._fix(row)

    def rows_by_keys(self, side: TableSide, keys: Sequence[Key]) -> dict[Key, tuple[Any, ...]]:
        """Rows for the given keys, one query (a VALUES list joined on the key)."""
        if not keys:
            return {}
        out: dict[Key, tuple[Any, ...]] = {}
        width = len(side.key)
        step = max(1, self.max_params // width)
        on = " AND ".join(f"t.{quote_ident(k)} = k.column{i + 1}" for i, k in enumerate(side.key))
        cols = ", ".join(self._col(c, "t.") for c in side.codec.columns)
        for start in range(0, len(keys), step):
            part = keys[start:start + step]
            values = ", ".join("(" + ", ".join("?" for _ in range(width)) + ")" for _ in part)
            params = [v for k in part for v in k]
            for row in self.conn.execute(f"SELECT {cols} FROM (VALUES {values}) AS k JOIN {self.table_name(side)} "
                                         f"AS t ON {on}", params):
                fixed = self._fix(row)
                out[side.key_of(fixed)] = fixed
        return out



class RemoteReplicaSnapshot(ReplicaSnapshot):
    """The same reads over Hrana (sqld, Turso, tursodb): the checksum is summed here from fetched rows.

    A remote read is not pinned to one snapshot across requests: a row the daemon changes while
    the validator reads is reported as differing and settled by the validator's re-check rounds.
    """

    def __init__(self, target: Any) -> None:  # noqa: D107 - no BEGIN, no SQL functions on the server

        self.conn = open_readonly(target)
        self.position = state.read_position(self.conn)

    def close(self) -> None:
        self.conn.close()

    def range_checksum(self, side: TableSide, rng: KeyRange) -> tuple[int, int]:
        where, params = self._where(side, rng)
        total = count = 0
        for row in self.conn.execute(f"SELECT {self._cols(side)} FROM {self.table_name(side)} WHERE {where}", params):
            total += row_digest(self._fix(row))
            count += 1
        return count, total % MOD


class D1ReplicaSnapshot(RemoteReplicaSnapshot):
    """The remote reads through the pg2edge D1 Worker: within D1's 100 bound parameters per statement,
    and integers beyond 2^53 (and infinite REALs) read as marked text, so they compare exactly."""

    max_params = 100

    def _col(self, column: str, prefix: str = "") -> str:
        return exact_column(prefix + quote_ident(column))

    def _fix(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(exact_value(v) for v in row)
