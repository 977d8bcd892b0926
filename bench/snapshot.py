"""Benchmark: snapshot 1M rows x 8 mixed types (bar: >= 150k rows/s and >= 5x db-to-sqlite).

Prints rows/s and peak RSS of the snapshot, a raw apsw insert of the same rows
in the same run (the ratio), and db-to-sqlite on the same table when it is
installed (pip install 'db-to-sqlite[postgresql]').

Usage: ./dev bench snapshot [--rows 1000000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import apsw
import psycopg

from pg2edge.pgcluster import LocalCluster
from pg2edge.pipeline.sources.snapshot import run_snapshot

TABLE_SQL = """CREATE TABLE bench (id int8 PRIMARY KEY, name text NOT NULL, price numeric(12,2),
    created timestamptz, attrs jsonb, active bool, ref uuid, blob bytea)"""
FILL_SQL = """INSERT INTO bench SELECT g, 'name ' || g, (g %% 100000) / 100.0,
    timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => g), jsonb_build_object('a', g, 'b', 'x'),
    g %% 2 = 0, md5(g::text)::uuid, decode(md5(g::text), 'hex') FROM generate_series(1, %s) g"""


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def raw_apsw(dsn: str, path: Path) -> float:
    """Fetch the rows with COPY (text) and insert them unencoded: the floor of any copy."""
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE bench (id INTEGER PRIMARY KEY, name, price, created, attrs, active, ref, blob)")
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy("COPY bench TO STDOUT") as copy:
        db.execute("BEGIN")
        batch = []
        for row in copy.rows():
            batch.append(row)
            if len(batch) == 5000:
                db.executemany("INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
                rows += len(batch)
                batch = []
        db.executemany("INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        rows += len(batch)
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return rows / seconds


def db_to_sqlite(dsn_url: str, path: Path) -> float | None:
    exe = shutil.which("db-to-sqlite") or str(Path(os.sys.executable).parent / "db-to-sqlite")
    if not Path(exe).exists():
        return None
    started = time.perf_counter()
    subprocess.run([exe, dsn_url, str(path), "--table", "bench"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pg2edge-bench-"))
    try:
        with LocalCluster() as cluster:
            dsn = cluster.dsn()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(TABLE_SQL)
                conn.execute(FILL_SQL, (args.rows,))
                conn.execute("ANALYZE bench")
            started = time.perf_counter()
            report = run_snapshot(dsn=dsn, target=work / "snap.db", jobs=args.jobs, say=lambda _: None)
            seconds = time.perf_counter() - started
            own, children = peak_rss_mb()
            rate = report.rows / seconds
            raw = raw_apsw(dsn, work / "raw.db")
            url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
            other = db_to_sqlite(url, work / "dbtosqlite.db")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(f"pg2edge snapshot: {report.rows:,} rows in {seconds:.2f} s = {rate:,.0f} rows/s "
              f"(jobs={args.jobs}); peak RSS coordinator {own:.0f} MB, largest worker {children:.0f} MB")
        print(f"raw apsw insert of the same rows (COPY text, no encoding, one process): {raw:,.0f} rows/s; "
              f"snapshot/raw = {rate / raw:.2f}")
        if other is None:
            print("db-to-sqlite: not installed (pip install 'db-to-sqlite[postgresql]')")
        else:
            print(f"db-to-sqlite: {args.rows / other:,.0f} rows/s ({other:.1f} s); "
                  f"pg2edge is {other / seconds:.1f}x faster")
        print(f"bar: >= 150,000 rows/s -> {'PASS' if rate >= 150_000 else 'FAIL'}"
              + ("" if other is None else f"; >= 5x db-to-sqlite -> {'PASS' if other / seconds >= 5 else 'FAIL'}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
