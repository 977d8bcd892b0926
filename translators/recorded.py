"""The source types a replica records when its tables are created, so queries translate at the edge.

``apply_ddl`` writes one record into the replica's state table
(``_pg2edge_state``, scope ``schema``, name ``source_types``) in the same
transaction as the DDL: the PostgreSQL type of every column of every table
and view (by SQLite name), the enum labels in declaration order, and the
storage options the codec used. ``pg2edge translate query --target FILE.db``
reads it back: no PostgreSQL access is needed at the edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pg2edge import statestore
from pg2edge.errors import Pg2EdgeError

SCOPE, NAME = "schema", "source_types"


class NoRecordedTypesError(Pg2EdgeError):
    """The replica has no recorded source types (created before pg2edge recorded them, or not a replica)."""


@dataclass(frozen=True)
class SourceTypes:
    tables: dict[str, dict[str, str]] = field(default_factory=dict)  # SQLite table/view -> column -> type
    enums: dict[str, list[str]] = field(default_factory=dict)  # enum type (unqualified) -> labels
    timestamps: str = "iso"
    numeric: str = "text"
    fts: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> FTS5 index (translators/fts.py)

    def merged(self, other: SourceTypes) -> SourceTypes:
        return SourceTypes(tables={**self.tables, **other.tables}, enums={**self.enums, **other.enums},
                           timestamps=other.timestamps, numeric=other.numeric, fts={**self.fts, **other.fts})


def write_source_types(conn: Any, types: SourceTypes) -> None:
    """Record ``types`` (merged with what is recorded) inside the caller's transaction on an apsw connection."""
    statestore.ensure_state_table(conn)
    known = read_source_types(conn, missing_ok=True)
    statestore.write_record(conn, SCOPE, NAME, asdict(known.merged(types) if known else types))


def read_source_types(conn: Any, *, missing_ok: bool = False) -> SourceTypes | None:
    data = statestore.read_record(conn, SCOPE, NAME)
    if data is None:
        if missing_ok:
            return None
        raise NoRecordedTypesError("the replica has no recorded source column types (_pg2edge_state schema/"
                                   "source_types): recreate its tables with this pg2edge version, or pass --source")
    return SourceTypes(**data)


def read_replica_types(path: str) -> SourceTypes:
    """The recorded types of the replica file at ``path`` (read-only). A remote target is read by the
    command through the pipeline's remote connection, then :func:`read_source_types`."""
    from pathlib import Path

    import apsw

    from pg2edge.errors import TargetError

    if not Path(path).is_file():
        raise TargetError(f"replica file {path} does not exist")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        raise TargetError(f"cannot open SQLite file {path}: {exc}") from exc
    try:
        found = read_source_types(conn)
        assert found is not None
        return found
    finally:
        conn.close()
