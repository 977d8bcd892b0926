"""Benchmark: validation of a 1M-row replica (bars: sample of 1,000 rows < 2 s; full diff < 10 s).

Builds the table of bench/snapshot.py (8 mixed types) in a throwaway cluster,
snapshots it, then times: sample mode (1,000 rows), full mode on identical
data, and full mode after 100 scattered differences were made directly in
SQLite (40 changed, 30 deleted, 30 extra), checking all 100 are found.

Usage: ./dev bench validate [--rows 1000000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import apsw
import psycopg

from pg2edge.pgcluster import LocalCluster
from pg2edge.pipeline.sources.snapshot import run_snapshot
from pg2edge.validators import validate

TABLE_SQL = """CREATE TABLE bench (id int8 PRIMARY KEY, name text NOT NULL, price numeric(12,2),
    created timestamptz, attrs jsonb, active bool, ref uuid, blob bytea)"""
FILL_SQL = """INSERT INTO bench SELECT g, 'name ' || g, (g %% 100000) / 100.0,
    timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => g), jsonb_build_object('a', g, 'b', 'x'),
    g %% 2 = 0, md5(g::text)::uuid, decode(md5(g::text), 'hex') FROM generate_series(1, %s) g"""


def corrupt(path: Path, rows: int, n: int = 100) -> int:
    rng = random.Random(11)
    keys = rng.sample(range(1, rows + 1), n)
    db = apsw.Connection(str(path))
    with db:
        for i, key in enumerate(keys):
            if i < 40:
                db.execute("UPDATE bench SET price = '0.01', name = name || '!' WHERE id = ?", (key,))
            elif i < 70:
                db.execute("DELETE FROM bench WHERE id = ?", (key,))
            else:
                db.execute("INSERT INTO bench (id, name) VALUES (?, 'extra')", (rows + key,))
    db.close()
    return n


def timed(label: str, **kwargs: object) -> float:
    started = time.perf_counter()
    report = validate(**kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    (table,) = report.tables
    print(f"{label:<42} {seconds:7.2f} s  checked {table.checked:>9,}  mismatches {len(table.mismatches):>4}  "
          f"chunks {table.chunks}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalCluster() as cluster:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE_SQL)
            conn.execute(FILL_SQL, (args.rows,))
            conn.execute("VACUUM ANALYZE bench")
        target = Path(tmp) / "bench.db"
        started = time.perf_counter()
        run_snapshot(dsn=dsn, target=target, say=lambda _: None)
        print(f"setup: {args.rows:,} rows snapshotted in {time.perf_counter() - started:.1f} s")
        timed("sample mode, 1,000 rows", dsn=dsn, target=target, mode="sample", sample_size=1000)
        timed("count mode", dsn=dsn, target=target, mode="count")
        timed(f"full mode, {args.rows:,} identical rows", dsn=dsn, target=target, mode="full")
        corrupt(target, args.rows)
        timed(f"full mode, {args.rows:,} rows, 100 differences", dsn=dsn, target=target, mode="full")


if __name__ == "__main__":
    main()
