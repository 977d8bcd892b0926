"""Benchmark: `pg2edge resync` of a big table while a second table streams.

1. A ``--rows`` (1M) table ``big`` and the lag probe's ``ticks`` table are
   snapshotted; the sync daemon runs (a thread, as in ``bench/cdc.py``).
2. The writer commits ~``--tps`` single-row transactions per second into
   ``ticks`` (commit -> visible lag measured per row, ``bench/lagprobe.py``)
   while, after ``--delay`` seconds, ``resync_tables`` re-copies ``big`` from a
   fresh snapshot in a separate process (as ``pg2edge resync`` runs beside the
   daemon; its own SQLite connection).
3. Printed: the resync's time and rows/s, lag percentiles over the whole
   window and over the rows committed while the resync ran (bar p99 < 100 ms).

Usage: ./dev bench resync [--rows 1000000] [--tps 1000] [--seconds 40] [--delay 3]
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
from bench.lagprobe import TICKS_DDL, measure_commits  # noqa: E402
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.daemon import run_sync  # noqa: E402
from pg2edge.pipeline.resync import resync_tables  # noqa: E402


def quiet(_: str) -> None:
    pass


def _resync(dsn: str, target: str, answer: object) -> None:
    def say(message: str) -> None:
        if os.environ.get("PG2EDGE_BENCH_DEBUG"):
            print(f"{time.time():.3f} {message}", flush=True)

    report = resync_tables(dsn=dsn, target=target, tables="big", say=say)
    say("resync returned")
    answer.put(report.tables.get("public.big", 0))  # type: ignore[attr-defined]


def pct(values: list[float], q: float) -> float:
    return values[max(0, int(len(values) * q) - 1)] * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pg2edge-resync-"))
    target = work / "r.db"
    try:
        with LocalCluster() as cluster:
            dsn = cluster.dsn()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, label text, n int, at timestamptz)")
                conn.execute("INSERT INTO big SELECT g, 'row ' || g, g %% 1000, now() FROM generate_series(1, %s) g",
                             (args.rows,))
                conn.execute(TICKS_DDL)
            run_sync(dsn=dsn, target=target, until_caught_up=True, say=quiet)
            stop = threading.Event()
            daemon = threading.Thread(target=run_sync, kwargs=dict(dsn=dsn, target=target, stop=stop, say=quiet,
                                                                   max_wait=0.05))
            daemon.start()
            time.sleep(3)
            window: dict[str, float] = {}

            def resync() -> None:  # in its own process, as `pg2edge resync` runs beside the daemon
                import multiprocessing as mp

                time.sleep(args.delay)
                ctx = mp.get_context("spawn")
                answer = ctx.Queue()
                window["start"] = time.perf_counter()
                proc = ctx.Process(target=_resync, args=(dsn, str(target), answer))
                proc.start()
                window["rows"] = answer.get()
                window["end"] = time.perf_counter()
                proc.join()

            copier = threading.Thread(target=resync)
            copier.start()
            try:
                lags, during = measure(dsn, target, tps=args.tps, seconds=args.seconds, window=window)
            finally:
                copier.join()
                stop.set()
                daemon.join(timeout=60)
        secs = window["end"] - window["start"]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(f"resync of {int(window['rows']):,} rows: {secs:.1f} s ({window['rows'] / secs:,.0f} rows/s), "
              f"the sync daemon streaming meanwhile")
        print(f"ticks lag, whole run ({len(lags):,} commits): p50 {statistics.median(lags) * 1000:.1f} ms, "
              f"p99 {pct(lags, 0.99):.1f} ms, max {lags[-1] * 1000:.1f} ms")
        print(f"ticks lag while the resync ran ({len(during):,} commits): p50 {pct(during, 0.5):.1f} ms, "
              f"p99 {pct(during, 0.99):.1f} ms, max {during[-1] * 1000 if during else float('nan'):.1f} ms "
              f"(goal p99 < 100 ms) -> {'PASS' if during and pct(during, 0.99) < 100 else 'FAIL'}")
        if window["end"] > window["start"] + args.seconds:
            print("note: the resync outlasted the writer; raise --seconds to cover it")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(dsn: str, replica: Path, *, tps: int, seconds: float,
            window: dict[str, float]) -> tuple[list[float], list[float]]:
    """The lag probe of bench/lagprobe.py, also splitting out the commits made while the resync ran."""
    pairs = measure_commits(dsn, replica, tps=tps, seconds=seconds)
    start, stop = window.get("start", 0.0), window.get("end", float("inf"))
    during = sorted(lag for at, lag in pairs if start <= at <= stop)
    if os.environ.get("PG2EDGE_BENCH_DEBUG"):
        offset = time.time() - time.perf_counter()
        for at, lag in pairs:
            if lag > 0.2:
                print(f"{at + offset:.3f} lag {lag * 1000:.0f} ms")
    return sorted(lag for _, lag in pairs), during


if __name__ == "__main__":
    main()
