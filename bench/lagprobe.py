"""Commit -> visible lag, shared by the CDC and Kafka benchmarks.

A writer commits ~``tps`` single-row transactions per second into ``ticks``
for ``seconds``; a reader polls the replica for ``max(id)`` every millisecond
and records, for each row, the time it became visible minus its commit time.
The caller creates the table (``TICKS_DDL``) and runs the daemons.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw
import psycopg

TICKS_DDL = "CREATE TABLE ticks (id bigint PRIMARY KEY, at timestamptz)"


def measure_lag(dsn: str, replica: Path, *, tps: int, seconds: float, drain_timeout: float = 30.0) -> list[float]:
    """Sorted lags in seconds, one per commit seen on the replica within ``drain_timeout`` after the writer stops."""
    return sorted(lag for _, lag in measure_commits(dsn, replica, tps=tps, seconds=seconds,
                                                    drain_timeout=drain_timeout))


def measure_commits(dsn: str, replica: Path, *, tps: int, seconds: float,
                    drain_timeout: float = 30.0) -> list[tuple[float, float]]:
    """(commit time on ``time.perf_counter``, lag in seconds) per commit seen on the replica, in commit order."""
    committed: dict[int, float] = {}
    lags: dict[int, float] = {}
    done = threading.Event()

    def reader() -> None:
        db = apsw.Connection(str(replica), flags=apsw.SQLITE_OPEN_READONLY)
        db.setbusytimeout(1000)
        seen, deadline = 0, None
        while not (done.is_set() and seen >= len(committed)):
            if done.is_set():
                deadline = deadline or time.monotonic() + drain_timeout
                if time.monotonic() > deadline:
                    break
            row = db.execute("SELECT max(id) FROM ticks").fetchone()
            top = (row[0] or 0) if row else 0
            now = time.perf_counter()
            for i in range(seen + 1, top + 1):
                if i in committed:
                    lags[i] = now - committed[i]
            seen = max(seen, top)
            time.sleep(0.001)
        db.close()

    watcher = threading.Thread(target=reader)
    watcher.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        next_at = time.perf_counter()
        end = next_at + seconds
        i = 0
        while time.perf_counter() < end:
            i += 1
            conn.execute("INSERT INTO ticks VALUES (%s, now())", (i,))
            committed[i] = time.perf_counter()
            next_at += 1.0 / tps
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    done.set()
    watcher.join(drain_timeout + 30)
    return [(committed[i], lag) for i, lag in sorted(lags.items())]
