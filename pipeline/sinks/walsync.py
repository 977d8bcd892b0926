"""Durability off the apply path for SQLite replicas: visible at commit, acknowledged once synced.

A replica transaction commits with ``PRAGMA synchronous=NORMAL`` in WAL mode: it is atomic and
visible to readers at once, and it survives a crash of the process (the WAL is in the operating
system's cache), but not yet a power loss. :class:`WalSync` then ``fsync``\\ s the WAL in a
background thread, at most every ``interval`` seconds; only a position committed before a
finished sync is *durable*, and only a durable position is acknowledged to the source (the
engine asks :meth:`durable`). A power loss can therefore lose the last unsynced commits, but the
source still holds them (its slot was not acknowledged past them): they are streamed again and
applied exactly once, like after any crash.

Why: with ``synchronous=FULL`` every commit waited for its own ``fsync``; on a busy disk that
took 150-600 ms and held every later change back (bench/resync.py, bench/lagprobe.py).

Checkpoints run in the same background thread, on its own connection (``PASSIVE``: they never
wait for the writer or for readers), once the WAL holds ``CHECKPOINT_PAGES``: SQLite's automatic
checkpoint would run inside the commit that crosses that size and sync both files there, which
put stalls of hundreds of milliseconds into the apply path on a busy disk (the Kafka lag bench's
p99). Checkpoints keep the rule: in WAL mode with ``NORMAL``, SQLite syncs the WAL before a checkpoint
copies it into the database and syncs the database before the WAL is reused, so a frame is
always durable in one of the two files once :meth:`durable` says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import apsw

log = logging.getLogger(__name__)

SYNC_INTERVAL = 0.05  # seconds between two fsyncs at most
CHECKPOINT_PAGES = 1000  # WAL pages that start a checkpoint (SQLite's automatic checkpoint default)


class WalSync:
    """Tracks the positions committed to one replica and which of them are synced to disk."""

    def __init__(self, conn: apsw.Connection, *, interval: float = SYNC_INTERVAL) -> None:
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.set_wal_hook(self._wal_pages)  # replaces the automatic checkpoint (see the module docstring)
        self._pages = 0  # WAL pages after the last commit
        self._checkpointed_at = 0  # the WAL's page count at the last checkpoint
        self._checkpointer: apsw.Connection | None = None
        self.path = Path(conn.filename)
        self.wal = Path(conn.filename_wal)
        self.interval = interval
        self._cond = threading.Condition()
        self._committed: Any = None  # the newest committed position
        self._durable: Any = None  # the newest position known synced
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self._dir_synced = False

    def committed(self, position: Any) -> None:
        """``position`` is committed (visible); it becomes durable with the next sync."""
        with self._cond:
            self._committed = position
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name=f"walsync-{self.path.name}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _wal_pages(self, _conn: apsw.Connection, _name: str, pages: int) -> int:
        self._pages = pages
        return apsw.SQLITE_OK

    def _checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: as far as readers allow, never waiting) once it is long.
        Never fatal: a checkpoint that fails (another process's checkpoint, a table swap under way) leaves the
        WAL longer, and the next round tries again; durability does not depend on it (the WAL is synced)."""
        pages = self._pages
        if pages < CHECKPOINT_PAGES or pages == self._checkpointed_at:
            return
        try:
            if self._checkpointer is None:
                self._checkpointer = apsw.Connection(str(self.path))
                self._checkpointer.execute("PRAGMA synchronous=NORMAL")
            self._checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        except apsw.Error as exc:
            log.debug("checkpoint of %s not done this round: %s", self.path, exc)
            self._close_checkpointer()
            return
        self._checkpointed_at = pages

    def _close_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def durable(self, *, wait: bool = False) -> Any:
        """The newest position synced to disk; ``wait``: sync now (in this thread) and stop the syncer."""
        if wait:
            with self._cond:
                self._stop = True
                self._cond.notify()
                thread = self._thread
            if thread is not None:
                thread.join()
            with self._cond:
                target = self._committed
            if target is not None and target is not self._durable:
                self._sync()
                with self._cond:
                    self._durable = target
        if self._error is not None:
            raise self._error
        return self._durable

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._committed is self._durable and not self._stop:
                    self._cond.wait()
                if self._stop:
                    self._close_checkpointer()
                    return
                target = self._committed
            try:
                self._sync()
            except OSError as exc:  # surfaced by durable(): the sync stops acknowledging
                log.error("cannot sync %s: %s", self.wal, exc)
                self._error = exc
                self._close_checkpointer()
                return
            with self._cond:
                self._durable = target
            self._checkpoint()
            time.sleep(self.interval)

    def _sync(self) -> None:
        if not self._dir_synced:  # the WAL file's directory entry (created with the first write)
            _fsync(self.path.parent)
            self._dir_synced = True
        try:
            _fsync(self.wal)
        except FileNotFoundError:  # checkpointed and removed: everything is in the database file
            _fsync(self.path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
