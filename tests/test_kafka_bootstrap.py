"""Bootstrapping Kafka replicas when the topic no longer holds the snapshot: detection, --seed-from, --resnapshot.

Tansu (the test broker, memory engine) does not delete records: DeleteRecords panics
("not yet implemented") and topic retention is not applied. So the offset checks are
tested as decisions on broker-reported offsets (``OffsetGuard``), and the real-broker tests use
a topic that starts mid-stream: the records of a real published topic from some offset on,
copied into a new topic. That is what a consumer sees after retention deleted the start,
except that the offsets start again at 0.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw
import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.kafka.bootstrap import (
    OffsetGuard,
    RecordsLostError,
    SeedError,
    SnapshotMissingError,
    TopicRewoundError,
    start_guard,
)
from pg2edge.pipeline.kafka.client import KafkaPythonConsumer, KafkaPythonProducer, Record, ensure_topic, make_consumer
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.records import topic_name
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.sinks import retry
from tests.support.replica import assert_replica_equals, current_lsn, wait_until
from tests.test_kafka import _db_name, _setup, _writes

pytestmark = pytest.mark.kafka
QUIET = {"say": lambda s: None}


def _record(offset: int, *, kind: bytes = b"change", key: bytes = b"{}") -> Record:
    return Record(topic="t", partition=0, offset=offset, key=key, value=b"{}", headers={"pg2edge.kind": kind})


BEGIN = {"kind": b"control", "key": b"snapshot-begin"}


# -- decisions on the offsets the broker reports -------------------------------------------------
def test_a_forward_jump_is_records_lost_and_a_backward_one_a_rewound_topic() -> None:
    guard = OffsetGuard("t", 0, expected=10, earliest=0, end_at_start=12, need_snapshot=False)
    assert guard.admit(_record(10)) and guard.expected == 11
    with pytest.raises(RecordsLostError) as lost:
        guard.admit(_record(15))
    message = str(lost.value)
    assert "topic t partition 0" in message and "offset 11" in message and "offset 15" in message
    assert "--seed-from" in message and "--resnapshot" in message and lost.value.exit_code == 2
    with pytest.raises(TopicRewoundError, match="expected offset 11, got offset 0"):
        guard.admit(_record(0))


def test_a_new_replica_skips_to_the_next_snapshot_begin_or_refuses() -> None:
    guard = OffsetGuard("t", 0, expected=100, earliest=100, end_at_start=200, need_snapshot=True)
    assert not guard.admit(_record(100)) and not guard.admit(_record(101, kind=b"snapshot"))
    assert guard.admit(_record(102, **BEGIN)) and guard.admit(_record(103, kind=b"snapshot"))
    assert guard.skipped == 2
    none = OffsetGuard("t", 0, expected=100, earliest=100, end_at_start=103, need_snapshot=True)
    assert not none.admit(_record(100)) and not none.admit(_record(101))
    with pytest.raises(SnapshotMissingError, match=r"first available record \(offset 100\) is not one"):
        none.admit(_record(102))  # the end of the topic at start, and still no snapshot-begin
    first = OffsetGuard("t", 0, expected=0, earliest=0, end_at_start=50, need_snapshot=True)
    assert first.admit(_record(0, **BEGIN)) and first.skipped == 0


# -- real broker -----------------------------------------------------------------------------------
def _read_all(bootstrap: str, topic: str, *, start: int = 0) -> list[Record]:
    consumer = KafkaPythonConsumer(bootstrap)
    consumer.seek(topic, 0, start)
    got: list[Record] = []
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        more = consumer.poll(timeout=0.3)
        if more:
            got += more
            idle = time.monotonic()
    consumer.close()
    return got


def _copy_topic(bootstrap: str, records: list[Record], topic: str) -> None:
    """Write ``records`` (key, value, headers) into a new topic: the topic as retention would leave it."""
    ensure_topic(bootstrap, topic)
    producer = KafkaPythonProducer(bootstrap)
    for r in records:
        producer.send(topic, value=r.value or b"", key=r.key, headers=list(r.headers.items()))
    producer.flush()
    producer.close()


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_watermarks_of_a_real_topic_and_an_existing_replica_resumes(kafka_bootstrap: str, client: str) -> None:
    if client == "confluent":
        pytest.importorskip("confluent_kafka")
    topic = f"wm.{client}"
    _copy_topic(kafka_bootstrap, [_record(i) for i in range(5)], topic)
    consumer = make_consumer(client, kafka_bootstrap)
    try:
        earliest, end = consumer.watermarks(topic, 0)
        assert earliest == 0 and end >= 1  # Tansu reports the last batch's base offset + 1 as the end
        guard = start_guard(consumer, topic, stored_offset=3)
        assert guard.expected == 4 and not guard.need_snapshot
        assert start_guard(consumer, topic, stored_offset=None).need_snapshot
    finally:
        consumer.close()


def test_a_new_replica_refuses_a_topic_that_lost_its_snapshot_via_cli(pg_dsn: str, kafka_bootstrap: str,
                                                                     tmp_path: Path, run_cli) -> None:
    _setup(pg_dsn)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="lost", state_path=tmp_path / "pub.db",
                  until_caught_up=True, envelope="row", **QUIET)
    _writes(pg_dsn, 20)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="lost", state_path=tmp_path / "pub.db",
                  until_caught_up=True, envelope="row", **QUIET)
    published = _read_all(kafka_bootstrap, topic_name("lost", _db_name(pg_dsn)))
    kinds = [r.headers["pg2edge.kind"] for r in published]
    assert kinds.count(b"snapshot") == 2300 and kinds.count(b"change") > 20
    cut = next(i for i, k in enumerate(kinds) if k == b"change")  # retention took the whole snapshot
    _copy_topic(kafka_bootstrap, published[cut:], "lost.cut")
    target = tmp_path / "new.db"
    done = run_cli("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--source", pg_dsn, "--topic",
                   "lost.cut", "--target", str(target), "--until-caught-up")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "topic lost.cut partition 0" in done.stderr and "snapshot-begin" in done.stderr
    assert "--seed-from" in done.stderr and "--resnapshot" in done.stderr
    conn = apsw.Connection(str(target), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert state.read_position(conn) is None  # nothing was applied
    finally:
        conn.close()


def test_resnapshot_reloads_every_replica_and_a_new_replica_starts_at_it(pg_dsn: str, kafka_bootstrap: str,
                                                                         tmp_path: Path, run_cli) -> None:
    _setup(pg_dsn)
    pub = ("publish", "--source", pg_dsn, "--bootstrap", kafka_bootstrap, "--topic-prefix", "re",
           "--state", str(tmp_path / "pub.db"), "--until-caught-up")
    assert run_cli(*pub).returncode == 0
    topic = topic_name("re", _db_name(pg_dsn))
    old = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "old.db", dsn=pg_dsn, topic=topic,
                            until_caught_up=True, **QUIET)
    assert old.snapshot_rows == 2300
    with apsw.Connection(str(tmp_path / "old.db")) as conn:  # a row the source never had: the reload drops it
        conn.execute("INSERT INTO items (id, name) VALUES (-1, 'stray')")
    _writes(pg_dsn, 30)
    again = run_cli(*pub[:-1], "--resnapshot", "--until-caught-up")
    assert again.returncode == 0, again.stdout + again.stderr
    rows = _source_rows(pg_dsn)
    assert rows == 2300 + 30 - 5  # 30 inserted, 5 deleted by _writes
    assert "--resnapshot" in again.stdout and f"{rows} snapshot rows" in again.stdout
    _writes(pg_dsn, 10, start=20_000)
    # the goal is what the publisher acknowledged: WAL written after it stopped (its last heartbeat) never
    # reaches the topic, so the source's current LSN would be a goal the replica cannot reach
    goal = run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="re", state_path=tmp_path / "pub.db",
                         until_caught_up=True, **QUIET).acked_lsn
    reloaded = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "old.db", dsn=pg_dsn, topic=topic,
                                 until_lsn=goal, **QUIET)
    assert reloaded.snapshot_rows == rows and reloaded.transactions >= 10
    assert_replica_equals(pg_dsn, tmp_path / "old.db")

    # the topic as retention would leave it: the first snapshot gone, the re-snapshot kept
    published = _read_all(kafka_bootstrap, topic)
    begins = [i for i, r in enumerate(published) if r.key == b"snapshot-begin"]
    assert len(begins) == 2
    _copy_topic(kafka_bootstrap, published[begins[0] + 5:], "re.cut")
    fresh = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "fresh.db", dsn=pg_dsn, topic="re.cut",
                              until_caught_up=True, **QUIET)
    assert fresh.snapshot_rows == rows
    assert_replica_equals(pg_dsn, tmp_path / "fresh.db")


def _source_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM notes)").fetchone()
    assert row is not None
    return int(row[0])


def _poison(path: Path, *, on: bool) -> None:
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    if on:
        conn.execute("CREATE TRIGGER poison BEFORE INSERT ON items WHEN NEW.name LIKE 'poison%' "
                     "BEGIN SELECT RAISE(ABORT, 'poison value refused'); END")
    else:
        conn.execute("DROP TRIGGER poison")
    conn.close()


def _queue(path: Path) -> list[retry.QueuedChange]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return retry.list_queue(conn)
    finally:
        conn.close()


def _offset(path: Path) -> int:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        pos = state.read_position(conn)
    finally:
        conn.close()
    return int(pos.kafka["offset"]) if pos and pos.kafka else -1


def test_seed_from_a_live_replica_keeps_rows_position_and_queue(pg_dsn: str, kafka_bootstrap: str,
                                                                tmp_path: Path, run_cli) -> None:
    _setup(pg_dsn)
    live, seeded = tmp_path / "live.db", tmp_path / "seeded.db"
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="seed", state_path=tmp_path / "pub.db",
                  until_caught_up=True, **QUIET)
    topic = topic_name("seed", _db_name(pg_dsn))
    run_kafka_replica(bootstrap=kafka_bootstrap, target=live, dsn=pg_dsn, topic=topic, until_caught_up=True, **QUIET)
    after_snapshot = _offset(live)
    _poison(live, on=True)  # a change the live replica parks in its retry queue
    stop = threading.Event()
    kw = dict(stop=stop, **QUIET)
    threads = [threading.Thread(target=run_publisher, daemon=True, kwargs=dict(
                   dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="seed", state_path=tmp_path / "pub.db", **kw)),
               threading.Thread(target=run_kafka_replica, daemon=True, kwargs=dict(
                   bootstrap=kafka_bootstrap, target=live, dsn=pg_dsn, topic=topic,
                   policy=retry.RetryPolicy(max_attempts=1, base_delay=0.1), **kw))]
    for t in threads:
        t.start()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO items (id, name) VALUES (90000, 'poison pill')")
        _writes(pg_dsn, 40)
        wait_until(lambda: [c.status for c in _queue(live)] == ["dead"], timeout=30)
        wait_until(lambda: _offset(live) > after_snapshot, timeout=30)
        taken = _offset(live)
        # seeding through the CLI while the live replica and the publisher keep running
        done = run_cli("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--source", pg_dsn, "--topic", topic,
                       "--seed-from", str(live), "--target", str(seeded), "--until-caught-up")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"seeded {seeded} from {live}" in done.stdout and "0 snapshot rows" in done.stdout
        assert [c.status for c in _queue(seeded)] == ["dead"]  # copied with the rows (and the poison trigger)
        assert _offset(seeded) >= taken
        refused = run_cli("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--source", pg_dsn, "--topic",
                          topic, "--seed-from", str(live), "--target", str(seeded))
        assert refused.returncode == 2 and f"target {seeded} already has a position" in refused.stderr
        with pytest.raises(SeedError, match="follows topic .*, not other.topic"):
            run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "x.db", dsn=pg_dsn, topic="other.topic",
                              seed_from=live, **QUIET)
        _writes(pg_dsn, 20, start=30_000)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    goal = parse_lsn(current_lsn(pg_dsn))
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="seed", state_path=tmp_path / "pub.db",
                  until_caught_up=True, **QUIET)
    for path in (live, seeded):
        _poison(path, on=False)
        replayed = run_cli("dlq", "replay", "--all", "--target", str(path), "--source", pg_dsn)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        run_kafka_replica(bootstrap=kafka_bootstrap, target=path, dsn=pg_dsn, topic=topic, until_lsn=goal, **QUIET)
        assert _queue(path) == []
        assert_replica_equals(pg_dsn, path)
