"""Kafka edge replicas that need only the broker (issue 15): schema records, start order, batch envelope,
unreadable records. Real Tansu broker, real PostgreSQL, real SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import psycopg
import pytest

from pg2edge.errors import ConfigError
from pg2edge.pipeline.events import ChangeEvent, Op, SourceInfo, Transaction
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import (
    KafkaPythonConsumer,
    KafkaPythonProducer,
    PartitionCountError,
    TopicMissingError,
    ensure_topic,
    wait_for_topic,
)
from pg2edge.pipeline.kafka.client import Record as KRecord
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.sinks import retry
from pg2edge.pipeline.state import read_position
from tests.support.replica import assert_replica_equals, diff_replica, wait_until
from tests.support.writeload import WriteLoad

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.kafka
QUIET = {"say": lambda s: None}

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[],
                    doc jsonb, at timestamptz, m mood);
INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['x', g::text], jsonb_build_object('g', g),
                         '2024-01-02 03:04:05+00'::timestamptz + g * interval '1 minute', 'ok' FROM generate_series(1, 1500) g;
"""


def _db(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.info.dbname


def _admin_topics(bootstrap: str) -> list[str]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def _equal(dsn: str, path: Path) -> bool:
    """The replica equals the source (False while it has not created its tables yet)."""
    try:
        return not diff_replica(dsn, path)
    except apsw.SQLError:
        return False


def _cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("PG2EDGE_SOURCE", None)  # an edge replica: no PostgreSQL DSN anywhere
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pg2edge", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


# -- start order -------------------------------------------------------------------------------
def test_consumers_never_create_topics_and_a_wrong_partition_count_is_named(kafka_bootstrap: str,
                                                                            tmp_path: Path) -> None:
    consumer = KafkaPythonConsumer(kafka_bootstrap)
    try:
        with pytest.raises(TopicMissingError, match="topic early.changes does not exist"):
            consumer.partition_count("early.changes")
        said: list[str] = []
        stop_after = iter([False, False, True])
        assert wait_for_topic(consumer, "early.changes", partitions=1, stopped=lambda: next(stop_after),
                              say=said.append, interval=0.05) == 0
        assert said == ["waiting for topic early.changes (it is created by `pg2edge publish`)"]
        assert "early.changes" not in _admin_topics(kafka_bootstrap)  # the metadata requests created nothing

        # the whole replica start-up path: Tansu auto-creates a topic on any metadata request that names it, even
        # with allow_auto_create_topics=False, so a replica must not name it before it exists
        stop, heard = threading.Event(), threading.Event()
        result: list[object] = []

        def say(line: str) -> None:
            if line.startswith("waiting for topic early2.changes"):
                heard.set()

        waiter = threading.Thread(target=lambda: result.append(run_kafka_replica(
            bootstrap=kafka_bootstrap, target=tmp_path / "early.db", topic="early2.changes", stop=stop, say=say)))
        waiter.start()
        assert heard.wait(60)
        time.sleep(1.0)
        assert "early2.changes" not in _admin_topics(kafka_bootstrap)
        stop.set()
        waiter.join(30)
        assert result and result[0].stopped_by == "stop requested" and result[0].transactions == 0  # type: ignore[attr-defined]

        ensure_topic(kafka_bootstrap, "four.changes", partitions=4)  # as a broker's auto-creation would leave it
        with pytest.raises(PartitionCountError, match=r"topic four.changes has 4 partition\(s\).*delete the topic"):
            wait_for_topic(consumer, "four.changes", partitions=1, say=said.append)
    finally:
        consumer.close()


# -- acceptance: two replicas started before the publisher, no DSN, one SIGKILLed ------------------
@pytest.mark.slow
def test_two_replicas_before_the_publisher_without_a_dsn_one_sigkilled(pg_dsn: str, kafka_bootstrap: str,
                                                                        tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    load = WriteLoad(pg_dsn, rows_per_txn=5, pause=0.002)
    load.create_table()
    topic = records.topic_name("edge", _db(pg_dsn))
    log = tmp_path / "cli.log"
    rep = {name: ("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--topic", topic,
                  "--target", str(tmp_path / f"{name}.db")) for name in ("a", "b")}
    replicas = {name: _cli(*args, log=log) for name, args in rep.items()}
    wait_until(lambda: log.read_text().count(f"waiting for topic {topic}") == 2, timeout=60, every=0.2)
    mirrors = {topic + ".retry", topic + ".dlq"}
    assert not ({topic} | mirrors) & set(_admin_topics(kafka_bootstrap))  # a replica creates no topic
    publisher = _cli("publish", "--source", pg_dsn, "--bootstrap", kafka_bootstrap, "--topic-prefix", "edge",
                     "--state", str(tmp_path / "pub.db"), "--tables", "items,load", log=log)
    try:
        load.start()
        time.sleep(3)
        replicas["a"].send_signal(signal.SIGKILL)  # mid-stream
        replicas["a"].wait(10)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a table changes shape while streaming
            conn.execute("ALTER TABLE items ADD COLUMN weight numeric(6,3), ADD COLUMN seen date")
            conn.execute("UPDATE items SET weight = id / 7.0, seen = '2024-02-29' WHERE id % 3 = 0")
            conn.execute("INSERT INTO items (id, name, weight, m) VALUES (9001, 'after alter', 1.25, 'happy')")
        time.sleep(1)
        replicas["a"] = _cli(*rep["a"], log=log)  # restarted, still without a DSN
        time.sleep(2)
        commits = load.stop()
        assert commits > 100
        for name in ("a", "b"):
            wait_until(lambda n=name: _equal(pg_dsn, tmp_path / f"{n}.db"), timeout=120, every=1.0)
    finally:
        load.stop()
        for proc in (*replicas.values(), publisher):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in (*replicas.values(), publisher)]
    text = log.read_text()
    assert codes == [0, 0, 0], text[-3000:]
    assert mirrors <= set(_admin_topics(kafka_bootstrap))  # the publisher created the replicas' queue topics
    for name in ("a", "b"):
        assert_replica_equals(pg_dsn, tmp_path / f"{name}.db")
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (desc,) = admin.describe_topics([topic])
        assert len(desc["partitions"]) == 1  # created by the publisher, not auto-created by the early replicas
    finally:
        admin.close()
    db = apsw.Connection(str(tmp_path / "a.db"))
    try:
        assert db.execute("SELECT weight, seen, m FROM items WHERE id = 9001").fetchall() == [("1.250", None, "happy")]
    finally:
        db.close()


def test_the_schema_record_carries_the_publishers_translate_options(pg_dsn: str, kafka_bootstrap: str,
                                                                    tmp_path: Path) -> None:
    """The replica builds its tables and codecs from the topic with the publisher's [translate] options:
    same model (round-trips through JSON), same DDL, same codec, no source access."""
    from pg2edge.config import TranslateConfig
    from pg2edge.pipeline.kafka.schema import introspect_tables
    from pg2edge.translators.modeljson import model_from_json, model_to_json
    from pg2edge.translators.schema import Schema

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    model = introspect_tables(pg_dsn, [("public", "items")])
    assert model_from_json(Schema, model_to_json(model)) == model
    options = TranslateConfig(timestamps="unix_ms", numeric="real")
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="opt", state_path=tmp_path / "pub.db",
                  until_caught_up=True, options=options, **QUIET)
    report = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "r.db",
                               topic=records.topic_name("opt", _db(pg_dsn)), until_caught_up=True, idle_seconds=1.0,
                               **QUIET)
    assert report.snapshot_rows == 1500
    db = apsw.Connection(str(tmp_path / "r.db"))
    try:
        types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(items)")}
        row = db.execute("SELECT price, at FROM items WHERE id = 2").fetchone()
    finally:
        db.close()
    assert types["at"] == "INTEGER" and types["price"] == "REAL"
    assert row == (3.0, 1704164645000 + 2 * 60_000)  # 2024-01-02 03:04:05 UTC + 2 minutes, in ms
    assert_replica_equals(pg_dsn, tmp_path / "r.db", options=options)


# -- old topics ---------------------------------------------------------------------------------
def test_a_row_envelope_topic_without_schema_records_still_replays(pg_dsn: str, kafka_bootstrap: str,
                                                                     tmp_path: Path) -> None:
    """A topic written by the per-row publisher before schema records existed replays (with --source for
    the schema); without a DSN the replica names the topic and the way out."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="old", state_path=tmp_path / "pub.db",
                  until_caught_up=True, envelope="row", **QUIET)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i in range(20):
            conn.execute("UPDATE items SET price = price + 1, doc = doc || '{\"u\": 1}' WHERE id = %s", (i + 1,))
        conn.execute("DELETE FROM items WHERE id > 1400")
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="old", state_path=tmp_path / "pub.db",
                  until_caught_up=True, envelope="row", **QUIET)
    got = _read_all(kafka_bootstrap, records.topic_name("old", _db(pg_dsn)))
    legacy = [r for r in got if r.key not in (b"snapshot-schema", b"schema")]
    assert len(legacy) == len(got) - 1 and sum(r.headers.get("pg2edge.kind") == b"change" for r in legacy) > 20
    _copy(kafka_bootstrap, legacy, "old.legacy")
    with pytest.raises(ConfigError, match="topic old.legacy carries no schema record.*--source"):
        run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "nodsn.db", topic="old.legacy",
                          until_caught_up=True, **QUIET)
    report = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "r.db", dsn=pg_dsn, topic="old.legacy",
                               until_caught_up=True, idle_seconds=1.0, **QUIET)
    assert report.snapshot_rows == 1500 and report.transactions == 21
    assert_replica_equals(pg_dsn, tmp_path / "r.db")


def _read_all(bootstrap: str, topic: str) -> list[KRecord]:
    consumer = KafkaPythonConsumer(bootstrap)
    consumer.seek(topic, 0, 0)
    got: list[KRecord] = []
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        more = consumer.poll(timeout=0.3)
        if more:
            got += more
            idle = time.monotonic()
    consumer.close()
    return got


def _copy(bootstrap: str, recs: list[KRecord], topic: str) -> None:
    ensure_topic(bootstrap, topic)
    producer = KafkaPythonProducer(bootstrap)
    for r in recs:
        producer.send(topic, value=r.value or b"", key=r.key, headers=list(r.headers.items()))
    producer.flush()
    producer.close()


# -- bad input ----------------------------------------------------------------------------------
def test_records_that_are_not_pg2edges_are_parked_by_name(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path,
                                                          run_cli) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="bad", state_path=tmp_path / "pub.db",
                  until_caught_up=True, **QUIET)
    topic = records.topic_name("bad", _db(pg_dsn))
    target = tmp_path / "r.db"
    run_kafka_replica(bootstrap=kafka_bootstrap, target=target, topic=topic, until_caught_up=True, idle_seconds=1.0,
                      **QUIET)
    before = len(_read_all(kafka_bootstrap, topic))
    producer = KafkaPythonProducer(kafka_bootstrap)
    foreign = [(b'{"hello": "world"}', []),  # another application's record
               (json.dumps({"v": 99, "txns": []}).encode(), [("pg2edge.kind", b"txns")]),  # a newer pg2edge
               (json.dumps({"type": "rebalance", "v": 1}).encode(), [("pg2edge.kind", b"control")]),
               (b"\xff\xfe not json", [("pg2edge.kind", b"rows")])]
    for value, headers in foreign:
        producer.send(topic, value=value, headers=headers)
    producer.flush()
    producer.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE items SET name = 'after the foreign records' WHERE id < 50")
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="bad", state_path=tmp_path / "pub.db",
                  until_caught_up=True, **QUIET)
    report = run_kafka_replica(bootstrap=kafka_bootstrap, target=target, topic=topic, until_caught_up=True,
                               idle_seconds=1.0, **QUIET)
    assert report.parked == 4 and report.transactions >= 1
    assert_replica_equals(pg_dsn, target)  # nothing after them was lost
    conn = apsw.Connection(str(target))
    try:
        dead = retry.list_queue(conn)
        pos = read_position(conn)
    finally:
        conn.close()
    assert [c.status for c in dead] == ["dead"] * 4
    offsets = [before + i for i in range(4)]
    for change, offset, why in zip(dead, offsets, ("no pg2edge.kind header", "format version 99 is newer",
                                                   "unknown control type 'rebalance'", "unreadable"), strict=True):
        assert change.error is not None and change.error.startswith(f"topic {topic} partition 0 offset {offset}: ")
        assert why in change.error
        assert change.event["offset"] == offset
    assert dead[0].event["value"] == '{"hello": "world"}'
    assert pos is not None and pos.kafka is not None and pos.kafka["offset"] > offsets[-1]
    shown = run_cli("dlq", "list", "--target", str(target))
    assert shown.returncode == 0 and f"partition 0 offset {offsets[1]}" in shown.stdout, shown.stdout + shown.stderr
    status = json.loads(run_cli("status", "--target", str(target), "--format", "json").stdout)
    assert status["dlq"] == 4


# -- the batch envelope ------------------------------------------------------------------------------
def _txn(commit: int, n: int) -> Transaction:
    src = SourceInfo(lsn=commit, commit_lsn=commit, tx_id=commit, ts_ms=1, schema="public", table="t")
    return Transaction(xid=commit, commit_lsn=commit, end_lsn=commit + 1, commit_ts=1,
                       events=tuple(ChangeEvent(Op.CREATE, None, {"id": str(i), "v": None}, src, {"id": str(i)})
                                    for i in range(n)))


def test_batch_records_hold_whole_transactions_and_restart_offsets_never_skip_one() -> None:
    txns = [_txn(100, 3), _txn(200, 7), _txn(300, 2), _txn(400, 1)]
    recs = [KRecord("t", 0, 10 + i, k, v, dict(h)) for i, (k, v, h) in
            enumerate(records.batch_records(txns, max_events=4))]
    # records: [100] | [200 changes 0-3] | [200 changes 4-6] | [300, 400]: a transaction is cut only when it
    # alone is larger than a record
    assert [[f[1] for f in json.loads(r.value or b"")["txns"]] for r in recs] == [[100], [200], [200], [300, 400]]
    regroup = records.Regrouper()
    items = [i for r in recs for i in regroup.feed(r)]
    got = [i.txn for i in items if isinstance(i, records.TxnItem)]
    assert [(t.commit_lsn, len(t.events)) for t in got] == [(100, 3), (200, 7), (300, 2), (400, 1)]
    assert got[1].events == txns[1].events  # the envelope round-trips
    # the offset stored with each: 300 shares its record with 400, so it keeps the offset below (a restart
    # at stored + 1 re-reads that record; the LSN check skips 300, 400 is applied)
    assert [i.offset for i in items] == [10, 12, 12, 13]
    fresh = records.Regrouper()  # a restart at offset 12: the tail fragment of 200 alone is dropped
    assert [i.txn.commit_lsn for r in recs[2:] for i in fresh.feed(r) if isinstance(i, records.TxnItem)] == [300, 400]
    # a byte budget too: wide rows make more, smaller records; a row alone larger than the budget is alone
    wide = [_txn(500, 5), _txn(600, 1)]
    sized = list(records.batch_records(wide, max_events=100, max_bytes=200))
    assert all(len(v) < 400 for _, v, _ in sized) and len(sized) >= 3
    again = records.Regrouper()
    assert [(i.txn.commit_lsn, len(i.txn.events)) for r, (_, v, h) in enumerate(sized)
            for i in again.feed(KRecord("t", 0, r, None, v, dict(h)))] == [(500, 5), (600, 1)]
    empty = list(records.batch_records([_txn(700, 0)]))
    assert [i.txn.commit_lsn for i in records.Regrouper().feed(KRecord("t", 0, 1, None, empty[0][1], dict(empty[0][2])))] == [700]
    rows = [ev for t in wide for ev in t.events]
    counts = [len(i.events) for r, (_, v, h) in enumerate(records.rows_records(rows, max_bytes=200))
              for i in records.Regrouper().feed(KRecord("t", 0, r, None, v, dict(h)))]  # type: ignore[union-attr]
    assert sum(counts) == 6 and len(counts) > 1
    bad = records.Regrouper().feed(KRecord("t", 0, 5, None, b'{"v": 2, "txns": []}', {"pg2edge.kind": b"txns"}))
    assert isinstance(bad[0], records.BadItem) and "format version 2" in bad[0].reason


@pytest.mark.slow
def test_one_publisher_eight_replicas_all_equal_to_the_source(pg_dsn: str, kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    load = WriteLoad(pg_dsn, rows_per_txn=10, pause=0.002)
    load.create_table()
    topic = records.topic_name("fan8", _db(pg_dsn))
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(fn, **kw) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(stop=stop, **QUIET, **kw)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(run_kafka_replica,), daemon=True,
                                kwargs=dict(bootstrap=kafka_bootstrap, target=tmp_path / f"r{i}.db", topic=topic))
               for i in range(8)]
    threads.append(threading.Thread(target=run, args=(run_publisher,), daemon=True, kwargs=dict(
        dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="fan8", state_path=tmp_path / "pub.db")))
    for t in threads:
        t.start()
    try:
        load.start()
        time.sleep(4)
        deadline = time.monotonic() + 60  # nine stream loops share the writer's process: give it time
        while load.commits <= 50 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert load.stop() > 50
        for i in range(8):
            wait_until(lambda n=i: bool(errors) or _equal(pg_dsn, tmp_path / f"r{n}.db"), timeout=120, every=1.0)
    finally:
        load.stop()
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    for i in range(8):
        assert_replica_equals(pg_dsn, tmp_path / f"r{i}.db")
