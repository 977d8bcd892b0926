"""Benchmark: CDC drain rate and commit -> visible lag.

1. Drain: 500k row changes committed while the daemon is stopped, then
   ``run_sync(until_caught_up)``: changes/s (bar >= 50k/s).
2. Lag: the daemon runs while a writer commits ~1,000 single-row transactions
   per second for 60 s; a reader polls the replica and records, for each row,
   visible time minus the writer's commit time (bar p99 < 100 ms).

Usage: ./dev bench cdc [--changes 500000] [--tps 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.lagprobe import TICKS_DDL, measure_lag  # noqa: E402
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.daemon import run_sync  # noqa: E402


def quiet(_: str) -> None:
    pass


def drain(dsn: str, target: Path, changes: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")
    run_sync(dsn=dsn, target=target, until_caught_up=True, say=quiet)  # snapshot (empty) + slot
    inserts = changes * 6 // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):  # 1,000-row transactions
            conn.execute("INSERT INTO backlog SELECT g, 'v' || g, 0 FROM generate_series(%s::bigint, %s::bigint) g",
                         (start + 1, min(start + 1000, inserts)))
        updates = changes * 3 // 10
        for start in range(0, updates, 1000):
            conn.execute("UPDATE backlog SET n = n + 1 WHERE id BETWEEN %s AND %s",
                         (start + 1, min(start + 1000, updates)))
        deletes = changes - inserts - updates
        conn.execute("DELETE FROM backlog WHERE id <= %s", (deletes,))
    started = time.perf_counter()
    report = run_sync(dsn=dsn, target=target, until_caught_up=True, say=quiet)
    seconds = time.perf_counter() - started
    assert report.rows == changes, (report.rows, changes)
    return changes / seconds


def lag(dsn: str, target: Path, tps: int, seconds: float) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TICKS_DDL)
    stop = threading.Event()
    daemon = threading.Thread(target=run_sync, kwargs=dict(dsn=dsn, target=target, stop=stop, say=quiet,
                                                           max_wait=0.05))
    daemon.start()
    time.sleep(3)  # slot + mapping ready
    try:
        return measure_lag(dsn, target, tps=tps, seconds=seconds)
    finally:
        stop.set()
        daemon.join(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pg2edge-cdc-"))
    try:
        with LocalCluster() as cluster:
            rate = drain(cluster.dsn(), work / "drain.db", args.changes)
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE lag")
            lags = lag(cluster.dsn("lag"), work / "lag.db", args.tps, args.seconds)
        p50 = statistics.median(lags) * 1000
        p99 = lags[int(len(lags) * 0.99) - 1] * 1000
        achieved = len(lags) / args.seconds
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(f"drain: {args.changes:,} changes at {rate:,.0f} changes/s (bar >= 50,000) -> "
              f"{'PASS' if rate >= 50_000 else 'FAIL'}")
        print(f"lag at {achieved:,.0f} TPS for {args.seconds:g} s ({len(lags):,} commits): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, max {lags[-1] * 1000:.1f} ms (bar p99 < 100 ms) -> {'PASS' if p99 < 100 else 'FAIL'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
