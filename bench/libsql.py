"""Benchmark: pg2edge into libSQL servers over Hrana (sqld 0.24.32 and tursodb 0.6), on loopback.

For each server, in one run:

1. raw Hrana insert rate: 500 single-row INSERTs per atomic batch (BEGIN ... COMMIT), pg2edge's own
   client, no PostgreSQL: the ceiling the server and wire allow;
2. snapshot rows/s, both paths in the same run, each into an empty server, a table of ``--rows`` rows,
   snapshot time only (``pg2edge snapshot``):
   * direct: rows from the exported snapshot sent over Hrana as they are read (no staging file);
   * staged: the file snapshot into a staging file, then the upload (the upload alone shown beside it);
3. CDC changes/s: ``--changes`` row changes (60% inserts, 30% updates, 10% deletes, 1,000-row
   transactions) committed while the daemon is stopped, then ``run_sync(until_caught_up)``.

Usage: ./dev bench libsql [--rows 200000] [--changes 200000] [--servers sqld,tursodb]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.daemon import run_sync  # noqa: E402
from pg2edge.pipeline.remote import HranaClient, parse_target  # noqa: E402
from pg2edge.pipeline.sinks.libsql import snapshot_into_remote  # noqa: E402
from tests.support.edge import SqldServer, TursoServer  # noqa: E402


def raw_insert_rate(url: str, rows: int, batch: int = 500) -> float:
    with HranaClient(parse_target(url, env={})) as client:
        client.execute('CREATE TABLE "raw" ("id" INTEGER PRIMARY KEY, "v" TEXT, "n" INTEGER)')
        sql = 'INSERT INTO "raw" ("id", "v", "n") VALUES (?, ?, ?)'
        started = time.perf_counter()
        for start in range(0, rows, batch):
            client.batch([(sql, (i, f"value {i}", i % 97)) for i in range(start, min(start + batch, rows))])
        return rows / (time.perf_counter() - started)


def snapshot_rate(dsn: str, url: str, rows: int, path: str) -> tuple[float, float | None]:
    """(snapshot rows/s, upload rows/s or None) of one snapshot by ``path`` into the empty server at ``url``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, customer text, total numeric(12,2), "
                     "status text, created_at timestamptz)")
        conn.execute("TRUNCATE orders")
        conn.execute("INSERT INTO orders SELECT g, 'customer ' || (g %% 977), (g %% 10000) / 100.0, 'shipped', "
                     "'2026-11-30 12:00:00+00'::timestamptz + g * interval '1 second' FROM generate_series(1, %s) g",
                     (rows,))
    lines: list[str] = []
    target = parse_target(url, env={})
    started = time.perf_counter()
    with HranaClient(target) as client:
        report = snapshot_into_remote(dsn=dsn, target=target, client=client, say=lines.append, jobs=2, path=path)
    total = time.perf_counter() - started
    assert report.rows == rows, report
    with HranaClient(target) as client:
        assert client.execute('SELECT count(*) FROM "orders"').rows == [(rows,)]
    upload = next((line for line in lines if line.startswith("uploaded")), None)
    if upload is None:
        return rows / total, None
    return rows / total, rows / float(upload.split("(")[1].split(" s")[0])


def cdc_rate(dsn: str, url: str, changes: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")
    run_sync(dsn=dsn, target=url, until_caught_up=True, say=lambda _: None)
    inserts, updates = changes * 6 // 10, changes * 3 // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):
            conn.execute("INSERT INTO backlog SELECT g, 'v' || g, 0 FROM generate_series(%s::bigint, %s::bigint) g",
                         (start + 1, min(start + 1000, inserts)))
        for start in range(0, updates, 1000):
            conn.execute("UPDATE backlog SET n = n + 1 WHERE id BETWEEN %s AND %s", (start + 1, start + 1000))
        conn.execute("DELETE FROM backlog WHERE id <= %s", (changes - inserts - updates,))
    started = time.perf_counter()
    report = run_sync(dsn=dsn, target=url, until_caught_up=True, say=lambda _: None)
    seconds = time.perf_counter() - started
    assert report.rows == changes, (report.rows, changes)
    return changes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--servers", default="sqld,tursodb", help="which servers (default sqld,tursodb)")
    args = parser.parse_args()
    chosen = [cls for cls in (SqldServer, TursoServer) if cls.name in args.servers.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="pg2edge-bench-libsql-") as tmp:
        work = Path(tmp)
        os.environ["PG2EDGE_STAGING_DIR"] = str(work / "staging")
        with LocalCluster() as cluster:
            for i, cls in enumerate(chosen):
                for what in ("raw", "direct", "staged", "cdc"):
                    server = cls(work / f"{cls.name}-{what}")
                    server.start()
                    try:
                        db = f"b{i}{what}"
                        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                            conn.execute(f'CREATE DATABASE "{db}"')
                        if what == "raw":
                            raw = raw_insert_rate(server.url, args.rows)
                        elif what == "direct":
                            direct, _ = snapshot_rate(cluster.dsn(db), server.url, args.rows, "direct")
                        elif what == "staged":
                            staged, upload = snapshot_rate(cluster.dsn(db), server.url, args.rows, "staged")
                        else:
                            cdc = cdc_rate(cluster.dsn(db), server.url, args.changes)
                    finally:
                        server.stop()
                results.append((cls.name, raw, direct, staged, upload, cdc))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
          f"; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; ./dev bench libsql --rows {args.rows} --changes {args.changes}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| server | raw Hrana insert (rows/s) | snapshot direct (rows/s) | snapshot staged (rows/s) "
          "| of which upload (rows/s) | direct/staged | CDC (changes/s) |")
    print("|---|---|---|---|---|---|---|")
    for name, raw, direct, staged, upload, cdc in results:
        print(f"| {name} | {raw:,.0f} | {direct:,.0f} | {staged:,.0f} | {upload or 0:,.0f} | {direct / staged:.2f} "
              f"| {cdc:,.0f} |")


if __name__ == "__main__":
    main()
