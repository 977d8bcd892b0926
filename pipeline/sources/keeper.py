"""The snapshot keeper: a small detached process that holds an exported snapshot.

``CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')`` returns a snapshot that
lives only while the connection that created it stays open and idle. The
keeper owns that connection, so a snapshot coordinator that stops can be rerun
and still import the same snapshot: finished tables are skipped.

When the keeper exits (the rule; it holds an idle-in-transaction session on
the source, so it never lingers without a reason):

* the replica records the snapshot as done or abandoned (or removed), or the
  server ended the session;
* ``hold_seconds`` (1 h) passed;
* its coordinator died without saying so (SIGKILL, OOM kill): after
  ``crash_grace`` seconds (3 s) unless a rerun adopted the snapshot by then.
  The coordinator is the process named ``coordinator_pid`` in the run record
  (at first the parent; a rerun that resumes writes its own pid). A
  coordinator that stops in order (SIGTERM/SIGINT during the snapshot, or an
  error) first marks the run ``held``: then the keeper keeps the snapshot for
  a rerun until ``hold_seconds``. So an interrupted snapshot resumes, and a
  killed one leaves no process behind: its rerun starts a clean snapshot.

Protocol: the parent writes one JSON line to stdin
``{"dsn", "slot", "replica", "timeout", "hold_seconds", "coordinator", "crash_grace"}``
(the DSN never appears on a command line); the keeper answers one JSON line
on stdout, ``{"slot", "consistent_lsn", "snapshot"}`` or ``{"error"}``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import apsw

from pg2edge.errors import Pg2EdgeError, SourceError
from pg2edge.pipeline.lifeline import process_alive
from pg2edge.pipeline.state import RUN_NAME, RUN_SCOPE, RunStatus, SnapshotRun, read_run, write_run

__all__ = ["RUN_NAME", "RUN_SCOPE", "KeptSnapshot", "KeeperError", "adopt", "hold_for_resume", "start_keeper",
           "stop_keeper"]

CRASH_GRACE = 3.0  # seconds a keeper whose coordinator died unannounced waits for a rerun to adopt it
CRASH_GRACE_ENV = "PG2EDGE_KEEPER_CRASH_GRACE"  # overrides it (a supervisor that restarts more slowly)


@dataclass(frozen=True)
class KeptSnapshot:
    slot: str
    consistent_lsn: int
    snapshot: str
    pid: int


class KeeperError(SourceError):
    """The keeper could not create the slot and snapshot; the message says why."""


def start_keeper(*, dsn: str, slot: str, replica: str, timeout: float = 60.0,
                 hold_seconds: float = 3600.0, crash_grace: float = CRASH_GRACE,
                 token: str | None = None) -> KeptSnapshot:
    """Start a detached keeper; returns once the slot and snapshot exist. ``replica`` is a file, or a
    remote target's URL (its run record read over Hrana; ``token`` goes through stdin, never argv)."""
    if os.environ.get(CRASH_GRACE_ENV):
        crash_grace = float(os.environ[CRASH_GRACE_ENV])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pg2edge.pipeline.sources.keeper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"dsn": dsn, "slot": slot, "replica": replica, "timeout": timeout,
                                 "hold_seconds": hold_seconds, "coordinator": os.getpid(),
                                 "crash_grace": crash_grace, "token": token}) + "\n")
    proc.stdin.close()
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise KeeperError(f"snapshot keeper exited with {proc.returncode} before creating slot {slot!r}")
    answer = json.loads(line)
    if "error" in answer:
        proc.wait(timeout=10)
        raise KeeperError(answer["error"])
    return KeptSnapshot(slot=answer["slot"], consistent_lsn=int(answer["consistent_lsn"]),
                        snapshot=answer["snapshot"], pid=proc.pid)


def hold_for_resume(db: apsw.Connection) -> None:
    """The coordinator stops in order mid-snapshot: mark the run ``held`` so its keeper waits for a rerun.

    Best effort (a full disk may refuse the write): without the mark the keeper ends after its crash grace
    and the rerun starts a clean snapshot.
    """
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
        with db:
            run = read_run(db)
            if run is not None and run.status is RunStatus.COPYING:
                write_run(db, replace(run, held=True))
    except (apsw.Error, Pg2EdgeError):  # a remote replica's errors too
        pass


def adopt(db: apsw.Connection, run: SnapshotRun) -> None:
    """A rerun resumes the snapshot: it becomes the keeper's coordinator (the ``held`` mark is cleared)."""
    with db:
        write_run(db, replace(run, coordinator_pid=os.getpid(), held=False))


def stop_keeper(pid: int | None) -> None:
    """Ask a keeper to release its snapshot now (it would also notice the state change)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _run_record(replica: str, token: str | None = None) -> SnapshotRun | None:
    if _remote(replica):
        from pg2edge.pipeline.remote.connection import RemoteConnection
        from pg2edge.pipeline.remote.url import parse_target

        remote = _REMOTES.get(replica)
        if remote is None:  # one keep-alive session for the keeper's whole life
            remote = _REMOTES[replica] = RemoteConnection(parse_target(replica, token=token))
        try:
            return read_run(remote)  # type: ignore[arg-type]
        except Exception:  # unreachable for now: not a reason to give the snapshot up
            return None
    try:
        conn = apsw.Connection(replica, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        return read_run(conn)
    finally:
        conn.close()


_REMOTES: dict[str, object] = {}


def _remote(replica: str) -> bool:
    return "://" in replica


def _released(run: SnapshotRun | None, snapshot: str, *, adopted_by_now: bool) -> bool:
    """Done with this snapshot; or, once the parent had time to record it, it was replaced."""
    if not run:
        return False
    if run.snapshot == snapshot:
        return run.status is not RunStatus.COPYING
    return adopted_by_now


def _connection_alive(conn: object) -> bool:
    """False once the server closed the idle connection (it is readable only then)."""
    import select

    import psycopg

    pgconn = conn.pgconn  # type: ignore[attr-defined]
    try:
        ready, _, _ = select.select([pgconn.socket], [], [], 0)
        if ready:
            pgconn.consume_input()  # raises once the server has closed the session
            return bool(pgconn.status == psycopg.pq.ConnStatus.OK)
    except (psycopg.OperationalError, OSError):
        return False
    return True


def main() -> int:
    from pg2edge.dsn import scrub
    from pg2edge.pipeline.sources.replication import create_slot_with_snapshot, drop_slot

    cfg = json.loads(sys.stdin.readline())
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        kept = create_slot_with_snapshot(cfg["dsn"], cfg["slot"], timeout=float(cfg["timeout"]))
    except Exception as exc:  # reported to the parent, never with the password
        print(json.dumps({"error": scrub(f"{type(exc).__name__}: {exc}", cfg["dsn"])}), flush=True)
        return 1
    try:
        print(json.dumps({"slot": kept.slot, "consistent_lsn": kept.consistent_lsn,
                          "snapshot": kept.snapshot_name}), flush=True)
        sys.stdout.close()
    except OSError:  # the parent died while the slot was being created: nobody will record or use it
        kept.conn.close()
        drop_slot(cfg["dsn"], kept.slot, missing_ok=True)
        return 1
    started = time.monotonic()
    deadline = started + float(cfg["hold_seconds"])
    coordinator = int(cfg.get("coordinator") or os.getppid())
    grace = float(cfg.get("crash_grace", CRASH_GRACE))
    orphaned_at: float | None = None
    while not stop and time.monotonic() < deadline:
        time.sleep(0.25)
        adopted = time.monotonic() - started > 30.0  # the parent records the run well before this
        run = _run_record(cfg["replica"], cfg.get("token"))
        if _released(run, kept.snapshot_name, adopted_by_now=adopted):
            break
        gone = not _remote(cfg["replica"]) and not os.path.exists(cfg["replica"])
        if gone or not _connection_alive(kept.conn):
            break  # the replica was removed, or the server ended the session: the snapshot is gone
        ours = run is not None and run.snapshot == kept.snapshot_name
        if ours and run is not None and run.coordinator_pid:
            coordinator = run.coordinator_pid
        if process_alive(coordinator) or (ours and run is not None and run.held):
            orphaned_at = None
        elif orphaned_at is None:
            orphaned_at = time.monotonic()
        elif time.monotonic() - orphaned_at > grace:
            break  # the coordinator died unannounced and no rerun adopted the snapshot
    kept.conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
