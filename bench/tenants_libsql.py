"""Benchmark: the tenant split into one sqld namespace per tenant (issue 18), on loopback.

For each ``--tenants`` value, on a fresh sqld 0.24.32 (--enable-namespaces, admin API) and a fresh
database: table ``notes`` (tenant_id in the key) with one row per tenant, then

1. the tenant snapshot: every tenant's database is created through the admin API and seeded
   (tenant databases/s);
2. ``--changes`` row changes (1,000-row transactions: 60% inserts, 30% updates, 10% deletes,
   spread over every tenant) committed while nothing runs, then ``run_tenant_sync(until_caught_up)``
   routes them: changes/s into the tenant databases (each batch: one atomic Hrana batch per touched
   tenant with its position, then the hub file).

Connections over all tenants are bounded by ``--max-connections``; ``--max-open`` tenant sinks are
kept open (LRU).

Usage: ./dev bench tenants_libsql [--tenants 50,1000] [--changes 50000] [--max-open 256]
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
from bench.tenantload import backlog  # noqa: E402
from pg2edge.config import TenantsConfig  # noqa: E402
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.tenants.daemon import run_tenant_sync  # noqa: E402
from tests.support.edge import SqldServer  # noqa: E402


def quiet(_: str) -> None:
    pass


def run(work: Path, cluster: LocalCluster, tenants: int, changes: int, max_open: int,
        max_connections: int) -> tuple[float, float, float, int]:
    server = SqldServer(work / f"sqld-{tenants}", namespaces=True)
    server.start()
    try:
        db = f"bench_{tenants}"
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        dsn = cluster.dsn(db)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))")
            conn.execute("INSERT INTO notes SELECT 't' || g, -g, 'seed' FROM generate_series(0, %s) g",
                         (tenants - 1,))
        cfg = TenantsConfig(pattern=server.tenant_pattern(), provision="sqld-admin", admin_url=server.admin_url,
                            shared_path=str(work / f"hub-{tenants}" / "_shared.db"), max_open=max_open,
                            max_connections=max_connections)
        started = time.perf_counter()
        report = run_tenant_sync(dsn=dsn, tenants=cfg, until_caught_up=True, say=quiet)
        snap = time.perf_counter() - started
        assert report.snapshot is not None and report.snapshot.tenants == tenants, report.snapshot
        backlog(dsn, changes, tenants)
        started = time.perf_counter()
        report = run_tenant_sync(dsn=dsn, tenants=cfg, until_caught_up=True, say=quiet)
        seconds = time.perf_counter() - started
        assert report.rows >= changes, (report.rows, changes)
        return tenants / snap, changes / seconds, seconds, report.peak_open_files
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", default="50,1000")
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--max-open", type=int, default=256)
    parser.add_argument("--max-connections", type=int, default=8)
    args = parser.parse_args()
    counts = [int(x) for x in args.tenants.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="pg2edge-bench-tenants-libsql-") as tmp:
        work = Path(tmp)
        os.environ["PG2EDGE_STAGING_DIR"] = str(work / "staging")
        with LocalCluster() as cluster:
            for n in counts:
                results.append((n, *run(work, cluster, n, args.changes, args.max_open, args.max_connections)))
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
          f"; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load {os.getloadavg()[0]:.2f}; ./dev bench tenants_libsql "
          f"--tenants {args.tenants} --changes {args.changes} --max-open {args.max_open} "
          f"--max-connections {args.max_connections}")
    print("| tenants | snapshot (tenant databases/s) | CDC into namespaces (changes/s) | CDC seconds | peak open |")
    print("|---|---|---|---|---|")
    for n, snap, cdc, seconds, peak in results:
        print(f"| {n:,} | {snap:,.1f} | {cdc:,.0f} | {seconds:.1f} | {peak} |")


if __name__ == "__main__":
    main()
