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


REMOTE_SCHEMES = ("libsql://", "http://", "https://")
TOKEN_ENV = "PG2EDGE_TARGET_TOKEN"


def _read_remote(url: str) -> SourceTypes:
    """The record from a libSQL / Turso / sqld target over Hrana HTTP (``POST /v2/pipeline``).

    The bearer token, if the server needs one, comes from ``$PG2EDGE_TARGET_TOKEN`` (never from argv)."""
    import json
    import os
    import urllib.error
    import urllib.request

    from pg2edge.errors import TargetError

    base = "https://" + url[len("libsql://"):] if url.startswith("libsql://") else url
    sql = "SELECT value FROM _pg2edge_state WHERE scope = ? AND name = ?"
    body = {"requests": [{"type": "execute", "stmt": {"sql": sql, "args": [
        {"type": "text", "value": SCOPE}, {"type": "text", "value": NAME}]}}, {"type": "close"}]}
    headers = {"Content-Type": "application/json"}
    if os.environ.get(TOKEN_ENV):
        headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
    request = urllib.request.Request(base.rstrip("/") + "/v2/pipeline", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    where = base.split("?")[0]
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TargetError(f"cannot read the recorded types from {where}: {exc}") from exc
    result = reply.get("results", [{}])[0]
    if result.get("type") != "ok":
        message = (result.get("error") or {}).get("message", "no state table")
        raise NoRecordedTypesError(f"{where} has no recorded source column types ({message})")
    rows = result["response"]["result"]["rows"]
    if not rows:
        raise NoRecordedTypesError(f"{where} has no recorded source column types (_pg2edge_state schema/source_types)")
    return SourceTypes(**json.loads(rows[0][0]["value"]))


def read_replica_types(path: str) -> SourceTypes:
    """The recorded types of the replica at ``path``: an SQLite file (read-only) or a libSQL URL."""
    if path.startswith(REMOTE_SCHEMES):
        return _read_remote(path)
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
