"""The last cutover actions: drain, promote, rollback. Each is idempotent and reports what it changed and its undo.

* ``drain``: wait until the replica has applied the freeze LSN (``cutover/freeze``).
* ``promote``: stop a running ``pg2edge sync`` (SIGTERM to the pid in
  ``daemon/pid`` on this host), back up the replica (a remote one into a local
  file, ``cutover/backup``), start capturing replica writes
  (:mod:`pipeline.cutover.changelog`), record ``cutover/promote``; optionally
  drop the slot and publication.
* ``rollback``: unfreeze the source, replay the replica writes logged since
  promote to PostgreSQL, stop capturing, record ``cutover/rollback``.

The replica is a file or a remote target (libSQL over Hrana, D1 through the
pg2edge Worker): both are opened with ``pipeline.status.open_writable``, whose
``with conn:`` sends a remote transaction's writes as one atomic batch, and the
capture triggers run inside the remote database.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pg2edge.dsn import connect
from pg2edge.errors import TargetError
from pg2edge.pipeline import state
from pg2edge.pipeline.cutover import CUTOVER_SCOPE, changelog
from pg2edge.pipeline.cutover.backup import backup_replica
from pg2edge.pipeline.cutover.errors import CutoverError
from pg2edge.pipeline.cutover.freeze import unfreeze
from pg2edge.pipeline.daemon import DAEMON_SCOPE, PID_RECORD
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.remote import is_remote
from pg2edge.pipeline.status import open_writable
from pg2edge.pipeline.teardown import teardown_replica
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.validators.waiting import wait_for_replica

log = logging.getLogger(__name__)

PROMOTE_RECORD = "promote"
ROLLBACK_RECORD = "rollback"


@dataclass
class ActionResult:
    """What an action changed (empty: nothing needed doing) and how to undo it."""

    action: str
    changes: list[str] = field(default_factory=list)
    undo: str = ""
    lsn: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(target: str | Path, name: str) -> dict | None:

    if not is_remote(target) and not Path(target).is_file():
        raise TargetError(f"replica {target} does not exist")
    db = open_writable(target)
    try:
        return state.read_record(db, CUTOVER_SCOPE, name)
    finally:
        db.close()


# -- drain --------------------------------------------------------------------------------
def drain(dsn: str, target: str | Path, *, timeout: float = 60.0) -> ActionResult:
    """Wait until the replica has applied everything up to the freeze LSN; error if the source is not frozen."""

    record = _record(target, "freeze")
    if not record or not record.get("frozen"):
        raise CutoverError(f"replica {target} records no freeze: run `pg2edge cutover freeze` first "
                           "(drain waits for the position after the freeze)")
    reached = wait_for_replica(dsn, target, int(record["lsn_int"]), timeout=timeout)
    how = "applied" if reached.how == "applied" else "nothing published pending (slot idle)"
    return ActionResult("drain", changes=[f"replica covers the freeze LSN {record['lsn']} ({how})"],
                        undo="nothing to undo (drain only waits)", lsn=record["lsn"])


# -- promote ------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stop_daemon(target: str | Path, *, timeout: float = 30.0) -> int | None:
    """SIGTERM the sync daemon recorded in the replica and wait for it to exit; returns its pid (None: none ran).

    A remote replica can be fed from another host: a daemon recorded there is named, not signalled here."""

    db = open_writable(target)
    try:
        record = state.read_record(db, DAEMON_SCOPE, PID_RECORD)
    finally:
        db.close()
    pid = int(record["pid"]) if record and record.get("pid") else None
    host = (record or {}).get("host")
    if pid is not None and host and host != socket.gethostname():
        raise CutoverError(f"the sync daemon of {target} runs on host {host} (pid {pid}): stop it there, then run "
                           "`pg2edge cutover promote` again")
    if pid is not None and not host and is_remote(target):  # recorded before hosts were: never signal blindly
        raise CutoverError(f"the sync daemon of {target} is recorded as pid {pid} on an unknown host: stop it "
                           "(it clears the record as it exits), then run `pg2edge cutover promote` again")
    if pid is None or pid == os.getpid() or not _alive(pid):
        return None
    log.warning("stopping the sync daemon (pid %d) of %s", pid, target)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            raise CutoverError(f"sync daemon pid {pid} of {target} did not exit within {timeout:g} s of SIGTERM")
        time.sleep(0.05)
    return pid


def _moved_tables(db: object) -> dict[str, str]:

    names = sorted(state.read_tables(db))  # type: ignore[arg-type]
    return {sqlite_table_name(*n.split(".", 1)): n for n in names}


def promote(dsn: str, target: str | Path, *, drop_slot: bool = False, backup: str | Path | None = None,
            take_backup: bool = True) -> ActionResult:
    """Make the replica the primary of the moved tables (see the module docstring); idempotent.

    ``take_backup=False`` when the caller has just backed up the replica (the migrate flow's backup task).
    """

    result = ActionResult("promote", undo="pg2edge cutover rollback (replays replica writes made since promote)")
    previous = _record(target, PROMOTE_RECORD)
    done = bool(previous and previous.get("promoted"))
    pid = stop_daemon(target)  # first: the backup then holds everything the daemon applied
    if pid is not None:
        result.changes.append(f"stopped the sync daemon (pid {pid}); restart it with `pg2edge sync`")
    if not done and take_backup:
        out = backup_replica(target, backup)
        result.changes.append(f"backed up the replica to {out}")
    db = open_writable(target)
    try:
        if done:
            assert previous is not None  # done means the promote record exists
            tables = previous["tables"]
        else:
            tables = _moved_tables(db)
        pos = state.read_position(db)
        with db:
            created = changelog.install(db, tables)
            if not done:
                result.lsn = format_lsn(pos.visible_lsn) if pos else None
                state.write_record(db, CUTOVER_SCOPE, PROMOTE_RECORD, {
                    "promoted": True, "time": _now(), "lsn": result.lsn, "tables": tables})
                result.changes.append(f"recorded the cutover at {result.lsn} in {target} (cutover/promote)")
    finally:
        db.close()
    if created:
        result.changes.append(f"capturing replica writes in {changelog.CHANGELOG_TABLE} "
                              f"({len(created)} triggers on {', '.join(sorted(tables))})")
    if drop_slot:

        undone = teardown_replica(dsn=dsn, target=target)
        result.changes += [f"source: {u}" for u in undone]
        if undone:
            result.undo += "; the slot and publication are gone: a rollback needs a new `pg2edge snapshot`"
    return result


# -- rollback -----------------------------------------------------------------------------
def rollback(dsn: str, target: str | Path) -> ActionResult:
    """Unfreeze the source; replay replica writes logged since promote to PostgreSQL; stop capturing."""

    result = ActionResult("rollback", undo="pg2edge cutover freeze (then drain and promote again)")
    thawed = unfreeze(dsn, replica=target)
    result.changes += [c.description for c in thawed.changes]
    promoted = _record(target, PROMOTE_RECORD)
    db = open_writable(target)
    try:
        todo = changelog.pending(db)
        if todo:
            with connect(dsn) as pg, pg.transaction():
                counts = changelog.replay(pg, todo)
            with db:
                changelog.mark_replayed(db, [c[0] for c in todo])
            result.changes += [f"replayed {n} replica write(s) to {t} on PostgreSQL" for t, n in counts.items()]
        if promoted and promoted.get("promoted"):
            with db:
                dropped = changelog.uninstall(db, list(promoted["tables"]))
                state.write_record(db, CUTOVER_SCOPE, PROMOTE_RECORD, {**promoted, "promoted": False,
                                                                        "rolled_back_at": _now()})
                state.write_record(db, CUTOVER_SCOPE, ROLLBACK_RECORD, {
                    "time": _now(), "replayed": len(todo), "unfreeze_lsn": thawed.lsn})
            result.changes.append(f"stopped capturing replica writes (dropped {len(dropped)} triggers); "
                                  "PostgreSQL is the primary again: restart `pg2edge sync`")
    finally:
        db.close()
    result.lsn = thawed.lsn
    return result


__all__ = ["ActionResult", "drain", "promote", "rollback", "stop_daemon"]
