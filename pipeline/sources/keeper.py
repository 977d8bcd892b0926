"""The snapshot keeper: a small detached process that holds an exported snapshot.

``CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')`` returns a snapshot that
lives only while the connection that created it stays open and idle. The
keeper owns that connection, so a snapshot coordinator that crashes (even
SIGKILL) can be rerun and still import the same snapshot: finished tables are
skipped. The keeper exits when the replica records the snapshot as done or
abandoned, or after ``hold_seconds``.

Protocol: the parent writes one JSON line to stdin
``{"dsn", "slot", "replica", "timeout", "hold_seconds"}`` (the DSN never
appears on a command line); the keeper answers one JSON line on stdout,
``{"slot", "consistent_lsn", "snapshot"}`` or ``{"error"}``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import apsw

from pg2edge.errors import SourceError
from pg2edge.pipeline.state import RUN_NAME, RUN_SCOPE, RunStatus, SnapshotRun, read_run

__all__ = ["RUN_NAME", "RUN_SCOPE", "KeptSnapshot", "KeeperError", "start_keeper", "stop_keeper"]


@dataclass(frozen=True)
class KeptSnapshot:
    slot: str
    consistent_lsn: int
    snapshot: str
    pid: int


class KeeperError(SourceError):
    """The keeper could not create the slot and snapshot; the message says why."""


def start_keeper(*, dsn: str, slot: str, replica: str, timeout: float = 60.0,
                 hold_seconds: float = 3600.0) -> KeptSnapshot:
    """Start a detached keeper; returns once the slot and snapshot exist."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pg2edge.pipeline.sources.keeper"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"dsn": dsn, "slot": slot, "replica": replica, "timeout": timeout,
                                 "hold_seconds": hold_seconds}) + "\n")
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


def stop_keeper(pid: int | None) -> None:
    """Ask a keeper to release its snapshot now (it would also notice the state change)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _run_record(replica: str) -> SnapshotRun | None:
    try:
        conn = apsw.Connection(replica, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return None
    try:
        return read_run(conn)
    finally:
        conn.close()


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
    from pg2edge.pipeline.sources.replication import create_slot_with_snapshot

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
    print(json.dumps({"slot": kept.slot, "consistent_lsn": kept.consistent_lsn,
                      "snapshot": kept.snapshot_name}), flush=True)
    sys.stdout.close()
    started = time.monotonic()
    deadline = started + float(cfg["hold_seconds"])
    while not stop and time.monotonic() < deadline:
        time.sleep(0.5)
        adopted = time.monotonic() - started > 30.0  # the parent records the run well before this
        if _released(_run_record(cfg["replica"]), kept.snapshot_name, adopted_by_now=adopted):
            break
        if not os.path.exists(cfg["replica"]) or not _connection_alive(kept.conn):
            break  # the replica was removed, or the server ended the session: the snapshot is gone
    kept.conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
