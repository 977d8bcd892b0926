"""Online backup of a replica with SQLite's backup API, recorded in the replica's state table."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import apsw

from pg2edge.pipeline import state
from pg2edge.pipeline.cutover import CUTOVER_SCOPE
from pg2edge.pipeline.cutover.errors import BackupError
from pg2edge.pipeline.sinks.sqlite import open_replica

log = logging.getLogger(__name__)

BACKUP_RECORD = "backup"


def default_backup_path(target: str | Path, *, now: datetime | None = None) -> Path:
    """``<target>.backup-<UTC timestamp>.db`` next to the replica."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = Path(target)
    return target.with_name(f"{target.name}.backup-{stamp}.db")


def backup_replica(target: str | Path, output: str | Path | None = None) -> Path:
    """Copy the replica to ``output`` (default :func:`default_backup_path`) while writers may keep going.

    The copy is one consistent snapshot (``step(-1)`` copies every page in one
    read transaction). The backup is recorded in the replica under
    ``cutover/backup`` with its path, time and the source position it holds.
    """
    target = Path(target)
    if not target.is_file():
        raise BackupError(f"replica file {target} does not exist")
    out = Path(output) if output is not None else default_backup_path(target)
    if out.exists():
        raise BackupError(f"backup file {out} already exists; choose another path")
    if not out.parent.is_dir():
        raise BackupError(f"directory {out.parent} does not exist")
    src = open_replica(target, busy_timeout_ms=30_000)  # the sync daemon may be writing
    try:
        position = _copy(src, target, out)
        record = {"path": str(out.resolve()), "time": datetime.now(UTC).isoformat(timespec="seconds"),
                  "position": None if position is None else asdict(position)}
        with src:
            state.write_record(src, CUTOVER_SCOPE, BACKUP_RECORD, record)
    finally:
        src.close()
    log.info("replica %s backed up to %s", target, out)
    return out


def _copy(src: apsw.Connection, target: Path, out: Path) -> state.Position | None:
    dest = apsw.Connection(str(out))
    try:
        with dest.backup("main", src, "main") as job:
            job.step(-1)
        position = state.read_position(dest)  # the position the copy holds, not the live one
        problems = [r[0] for r in dest.execute("PRAGMA integrity_check") if r[0] != "ok"]
    except apsw.Error as exc:
        dest.close()
        out.unlink(missing_ok=True)
        raise BackupError(f"cannot back up {target} to {out}: {exc}") from exc
    dest.close()
    if problems:
        raise BackupError(f"backup {out} fails integrity_check: {'; '.join(problems[:5])}")
    return position
