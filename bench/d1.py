"""Benchmark: changes/s into a local Cloudflare D1 through the pg2edge Worker (workerd via wrangler dev --local).

1. Raw: the Worker's own insert rate, 1,000 single-row upserts per request (one
   env.DB.batch() each), so the pg2edge figure below has its ceiling beside it.
2. Snapshot: rows/s of a table loaded into D1 (local snapshot + upload).
3. Drain: N row changes (60% inserts, 30% updates, 10% deletes, 1,000-row
   transactions) committed while the daemon is stopped, then
   ``run_sync_d1(until_caught_up)``: changes/s (goal >= 10k/s).

Usage: ./dev bench d1 [--changes 200000] [--snapshot-rows 200000]
(needs tests/node installed: cd tests/node && npm ci)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.d1.client import D1Client  # noqa: E402
from pg2edge.pipeline.d1.daemon import run_sync_d1  # noqa: E402
from pg2edge.pipeline.remote.url import parse_target  # noqa: E402
from tests.support.d1 import LocalD1  # noqa: E402


def quiet(_: str) -> None:
    pass


def raw(d1: LocalD1, rows: int = 20_000) -> float:
    c = D1Client(parse_target(d1.url, token=d1.token))
    c.batch([("CREATE TABLE raw (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)", [])])
    sql = 'INSERT INTO raw (id, v, n) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = excluded.n'
    started = time.perf_counter()
    for start in range(0, rows, 1000):
        c.batch([(sql, [i, f"v{i}", 0]) for i in range(start, start + 1000)])
    rate = rows / (time.perf_counter() - started)
    c.batch([("DROP TABLE raw", [])])  # D1 is then empty again for pg2edge
    return rate


def snapshot(dsn: str, d1: LocalD1, rows: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE snap (id bigint PRIMARY KEY, v text, n int, at timestamptz)")
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")  # filled after the snapshot
        conn.execute("INSERT INTO snap SELECT g, 'v' || g, g, now() FROM generate_series(1, %s) g", (rows,))
    started = time.perf_counter()
    run_sync_d1(dsn=dsn, target=d1.url, until_caught_up=True, say=quiet)
    return rows / (time.perf_counter() - started)


def drain(dsn: str, d1: LocalD1, changes: int) -> float:
    inserts = changes * 6 // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):
            conn.execute("INSERT INTO backlog SELECT g, 'v' || g, 0 FROM generate_series(%s::bigint, %s::bigint) g",
                         (start + 1, min(start + 1000, inserts)))
        updates = changes * 3 // 10
        for start in range(0, updates, 1000):
            conn.execute("UPDATE backlog SET n = n + 1 WHERE id BETWEEN %s AND %s", (start + 1, start + 1000))
        deletes = changes - inserts - updates
        conn.execute("DELETE FROM backlog WHERE id <= %s", (deletes,))
    started = time.perf_counter()
    report = run_sync_d1(dsn=dsn, target=d1.url, until_caught_up=True, say=quiet)
    seconds = time.perf_counter() - started
    assert report.rows == changes, (report.rows, changes)
    return changes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--snapshot-rows", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pg2edge-d1-"))
    cwd = os.getcwd()
    try:
        os.chdir(work)
        d1 = LocalD1(work / "d1").start()
        os.environ["PG2EDGE_TARGET_AUTH_TOKEN"] = d1.token
        os.environ["PG2EDGE_STAGING_DIR"] = str(work / "staging")
        try:
            raw_rate = raw(d1)
            with LocalCluster() as cluster:
                snap_rate = snapshot(cluster.dsn(), d1, args.snapshot_rows)
                drain_rate = drain(cluster.dsn(), d1, args.changes)
        finally:
            d1.stop()
        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"raw Worker upserts (1,000 per env.DB.batch()): {raw_rate:,.0f} rows/s")
        print(f"snapshot into D1 ({args.snapshot_rows:,} rows, local copy + upload): {snap_rate:,.0f} rows/s")
        print(f"drain of {args.changes:,} changes into D1: {drain_rate:,.0f} changes/s (goal >= 10k/s)")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
