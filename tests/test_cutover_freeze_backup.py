"""Replica backup with SQLite's backup API while the sync daemon (another connection) keeps writing."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import apsw
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.cutover.backup import backup_replica, default_backup_path
from pg2edge.pipeline.cutover.errors import BackupError
from pg2edge.pipeline.sinks.sqlite import open_replica


def fill(path: Path, rows: int) -> None:
    db = open_replica(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    with db:
        db.executemany("INSERT INTO items VALUES (?, ?)", ((i, "x" * 200) for i in range(1, rows + 1)))
        state.write_position(db, state.Position(commit_lsn=rows, end_lsn=rows))
    db.close()


def test_backup_while_another_connection_writes(sqlite_path: Path, tmp_path: Path) -> None:
    fill(sqlite_path, 100_000)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # each transaction writes rows and the position together, like the applier
        db = open_replica(sqlite_path)
        n = 100_000
        while not stop.is_set():
            with db:
                db.executemany("INSERT INTO items VALUES (?, ?)", ((n + i, "y") for i in range(1, 51)))
                n += 50
                state.write_position(db, state.Position(commit_lsn=n, end_lsn=n))
            written.append(n)
            stop.wait(0.001)  # the daemon reads the network between batches; a tight loop starves others
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 3:
            stop.wait(0.01)
        out = backup_replica(sqlite_path, tmp_path / "copy.db")
        after_backup = len(written)
    finally:
        stop.set()
        thread.join()
    assert after_backup >= 3

    copy = apsw.Connection(str(out))
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    count, top = copy.execute("SELECT count(*), max(id) FROM items").fetchone()
    position = state.read_position(copy)
    assert position is not None and position.commit_lsn == top == count  # one consistent transaction boundary
    copy.close()

    db = open_replica(sqlite_path)
    record = state.read_record(db, "cutover", "backup")
    db.close()
    assert record["path"] == str(out.resolve())
    assert record["position"]["commit_lsn"] == top
    assert record["time"]


def test_default_backup_path_and_refusals(sqlite_path: Path) -> None:
    fill(sqlite_path, 10)
    out = backup_replica(sqlite_path)
    assert out.parent == sqlite_path.parent
    assert re.fullmatch(r"replica\.db\.backup-\d{8}T\d{6}Z\.db", out.name), out.name
    assert default_backup_path(sqlite_path, now=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)).name == \
        "replica.db.backup-20240506T070809Z.db"
    with pytest.raises(BackupError, match="already exists"):
        backup_replica(sqlite_path, out)
    with pytest.raises(BackupError, match="missing.db does not exist"):
        backup_replica(sqlite_path.with_name("missing.db"))
