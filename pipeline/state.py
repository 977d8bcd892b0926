"""The replica's own state table, ``_pg2edge_state``, inside each SQLite file.

One row per (scope, name) with a JSON value:

=============  ==================  =============================================
scope          name                value
=============  ==================  =============================================
source         identity            {"system_identifier", "database"}
source         stream              {"slot", "publication"}
position       applied             {"commit_lsn", "end_lsn", "xid", "kafka": {...}|null}
table          <schema>.<table>    TableState (snapshot progress, pause, columns)
source_change  <n>                 {"description", "sql", "undo_sql"}
snapshot       run                 SnapshotRun (status, consistent LSN, exported snapshot, keeper pid)
cutover        <name>              free-form record of the cutover phase
=============  ==================  =============================================

The record store itself (table, upsert, reads) is :mod:`pg2edge.statestore` in the core, so the
schema translator can record the source types with the tables it creates. Writers never begin or commit: they take the caller's open transaction (and
refuse to run outside one) so state is committed with the data it describes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import apsw

from pg2edge.errors import StateError
from pg2edge.pipeline.sourcechanges import SourceChange
from pg2edge.statestore import DDL as DDL
from pg2edge.statestore import STATE_TABLE as STATE_TABLE
from pg2edge.statestore import _require_txn
from pg2edge.statestore import ensure_state_table as ensure_state_table
from pg2edge.statestore import read_record as read_record
from pg2edge.statestore import read_scope as read_scope
from pg2edge.statestore import write_record as write_record
from pg2edge.translators.quoting import quote_ident

_T = quote_ident(STATE_TABLE)


# -- source identity ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SourceIdentity:
    system_identifier: str
    database: str


def write_source(conn: apsw.Connection, identity: SourceIdentity) -> None:
    write_record(conn, "source", "identity", asdict(identity))


def read_source(conn: apsw.Connection) -> SourceIdentity | None:
    data = read_record(conn, "source", "identity")
    return None if data is None else SourceIdentity(**data)


def check_source(conn: apsw.Connection, identity: SourceIdentity) -> None:
    """Refuse a replica that was filled from a different PostgreSQL cluster or database."""
    known = read_source(conn)
    if known is not None and known != identity:
        raise StateError(
            f"this replica belongs to database {known.database!r} of cluster {known.system_identifier}, "
            f"not {identity.database!r} of cluster {identity.system_identifier}")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    slot: str
    publication: str


def write_stream(conn: apsw.Connection, info: StreamInfo) -> None:
    write_record(conn, "source", "stream", asdict(info))


def read_stream(conn: apsw.Connection) -> StreamInfo | None:
    data = read_record(conn, "source", "stream")
    return None if data is None else StreamInfo(**data)


# -- position -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Position:
    """Last applied source commit: skip anything at or below ``commit_lsn``; resume at ``end_lsn``."""

    commit_lsn: int
    end_lsn: int
    xid: int | None = None
    kafka: dict[str, int] | None = None
    commit_ts_ms: int | None = None  # source commit time of the last applied transaction
    watermark_lsn: int | None = None  # every source change below this LSN is applied (heartbeats)

    @property
    def visible_lsn(self) -> int:
        """The highest source LSN a reader of the replica is known to have seen."""
        return max(self.end_lsn, self.watermark_lsn or 0)


def write_position(conn: apsw.Connection, position: Position) -> None:
    write_record(conn, "position", "applied", asdict(position))


def advance_watermark(conn: apsw.Connection, lsn: int, *, cursor: Mapping[str, Any] | None = None) -> None:
    """Record that every source change below ``lsn`` is applied (a heartbeat passed); own transaction.

    Not before a snapshot is complete (commit LSN 0); ``cursor`` (a Kafka offset) is stored with it."""
    conn.execute("BEGIN IMMEDIATE")  # read then write: a deferred transaction would fail (SQLITE_BUSY_SNAPSHOT)
    try:                              # when another writer (a resync) committed in between
        current = read_position(conn)
        if current is not None and current.commit_lsn > 0 and lsn > (current.watermark_lsn or 0):
            write_position(conn, replace(current, watermark_lsn=lsn,
                                         kafka=dict(cursor) if cursor is not None else current.kafka))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def read_position(conn: apsw.Connection) -> Position | None:
    data = read_record(conn, "position", "applied")
    return None if data is None else Position(**data)


# -- the snapshot run -----------------------------------------------------------------
RUN_SCOPE, RUN_NAME = "snapshot", "run"


class RunStatus(str, enum.Enum):
    COPYING = "copying"  # rows are being copied; a rerun resumes while the exported snapshot lives
    DONE = "done"  # complete: the position is the snapshot's consistent LSN
    ABANDONED = "abandoned"  # replaced by a new snapshot (the publisher's interrupted run)
    RESNAPSHOT = "resnapshot"  # a finished snapshot the operator asked to replace (publish --resnapshot)
    STALE = "stale"  # a tenant hub copy that must be retaken (its split found an id the source no longer has)


@dataclass(frozen=True, slots=True)
class SnapshotRun:
    status: RunStatus
    consistent_lsn: int
    snapshot: str | None = None  # the exported snapshot's name
    keeper_pid: int | None = None  # the process that holds it
    via: str | None = None  # "kafka": the snapshot came through a topic
    coordinator_pid: int | None = None  # the process copying it (the keeper follows it; a rerun adopts it)
    held: bool = False  # the coordinator stopped in order: the keeper keeps the snapshot for a rerun


def write_run(conn: apsw.Connection, run: SnapshotRun) -> None:
    write_record(conn, RUN_SCOPE, RUN_NAME, {k: v for k, v in asdict(run).items() if v is not None and v is not False})


def read_run(conn: apsw.Connection) -> SnapshotRun | None:
    data = read_record(conn, RUN_SCOPE, RUN_NAME)
    if not data:
        return None
    return SnapshotRun(status=RunStatus(data["status"]), consistent_lsn=int(data.get("consistent_lsn") or 0),
                       snapshot=data.get("snapshot"), keeper_pid=int(data["keeper_pid"]) if data.get("keeper_pid")
                       else None, via=data.get("via"),
                       coordinator_pid=int(data["coordinator_pid"]) if data.get("coordinator_pid") else None,
                       held=bool(data.get("held")))


# -- per-table state ----------------------------------------------------------------
class SnapshotStatus(str, enum.Enum):
    PENDING = "pending"
    COPYING = "copying"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class TableState:
    """Per source table: snapshot progress, stream pause, and the last known column types."""

    table: str  # "schema.table"
    snapshot: SnapshotStatus = SnapshotStatus.PENDING
    snapshot_lsn: int | None = None
    rows_copied: int = 0
    paused: bool = False
    pause_reason: str | None = None
    paused_at_lsn: int | None = None
    columns: list[list[Any]] = field(default_factory=list)  # [[name, type_oid, type_modifier], ...]


def write_table(conn: apsw.Connection, state: TableState) -> None:
    write_record(conn, "table", state.table, asdict(state))


def _table_state(data: dict[str, Any]) -> TableState:
    return TableState(**{**data, "snapshot": SnapshotStatus(data.get("snapshot", "pending"))})


def read_table(conn: apsw.Connection, table: str) -> TableState | None:
    data = read_record(conn, "table", table)
    return None if data is None else _table_state(data)


def read_tables(conn: apsw.Connection) -> dict[str, TableState]:
    return {name: _table_state(data) for name, data in read_scope(conn, "table").items()}


# -- source changes (for teardown) --------------------------------------------------
def record_source_changes(conn: apsw.Connection, changes: Sequence[SourceChange]) -> None:
    """Append source changes (publication, slot, replica identity) so teardown can undo them."""
    start = len(read_scope(conn, "source_change"))
    for i, change in enumerate(changes, start=start):
        write_record(conn, "source_change", f"{i:06d}", asdict(change))


def read_source_changes(conn: apsw.Connection) -> list[SourceChange]:
    return [SourceChange(**data) for _, data in sorted(read_scope(conn, "source_change").items())]


def clear_source_changes(conn: apsw.Connection) -> None:
    _require_txn(conn, "clearing source changes")
    conn.execute(f"DELETE FROM {_T} WHERE scope = 'source_change'")
