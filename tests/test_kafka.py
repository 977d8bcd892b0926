"""Kafka transport: publisher -> Tansu broker -> replicas, against real PostgreSQL and SQLite."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline.events import ChangeEvent
from pg2edge.pipeline.kafka.client import KafkaPythonConsumer
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.records import Regrouper, topic_name
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.lsn import parse_lsn
from tests.support.replica import assert_replica_equals, current_lsn, diff_replica

pytestmark = pytest.mark.kafka

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[],
                    created timestamptz DEFAULT now());
CREATE TABLE notes (a int, b text, body text, PRIMARY KEY (a, b));
INSERT INTO items (id, name, price, tags) SELECT g, 'item ' || g, g * 1.5, ARRAY['x', g::text]
  FROM generate_series(1, 2000) g;
INSERT INTO notes SELECT g % 10, 'k' || g, repeat('n', g) FROM generate_series(1, 300) g;
"""


def _setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def _writes(dsn: str, n_txn: int, *, start: int = 10_000) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n_txn):
            with conn.transaction():
                conn.execute("INSERT INTO items (id, name, price) VALUES (%s, %s, %s)", (start + i, f"new {i}", i))
                conn.execute("UPDATE items SET price = price + 1, name = name || '!' WHERE id = %s", (i % 2000 + 1,))
                if i % 7 == 0:
                    conn.execute("DELETE FROM items WHERE id = %s", (i % 2000 + 1,))
                if i % 11 == 0:
                    conn.execute("UPDATE notes SET body = 'changed ' || %s WHERE a = %s", (i, i % 10))


class _Thread(threading.Thread):
    def __init__(self, fn, **kw) -> None:
        super().__init__(daemon=True)
        self.fn, self.kw, self.result, self.error = fn, kw, None, None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn(stop=self.stop, say=lambda s: None, **self.kw)
        except BaseException as exc:  # re-raised by the test
            self.error = exc

    def finish(self) -> object:
        self.stop.set()
        self.join(60)
        if self.error:
            raise self.error
        return self.result


def _db_name(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.info.dbname


def test_snapshot_and_changes_reach_two_replicas(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path, run_cli) -> None:
    _setup(pg_dsn)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="t1", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None)  # the snapshot, before any change
    pub = _Thread(run_publisher, dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="t1",
                  state_path=tmp_path / "pub.db")
    pub.start()
    _writes(pg_dsn, 300)
    goal = parse_lsn(current_lsn(pg_dsn))
    topic = topic_name("t1", _db_name(pg_dsn))
    reports = [run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / f"r{i}.db", dsn=pg_dsn, topic=topic,
                                 group=f"g{i}", until_lsn=goal, say=lambda s: None) for i in range(2)]
    pub.finish()
    for i, rep in enumerate(reports):
        assert rep.snapshot_rows == 2300
        assert rep.transactions == 300
        assert rep.position is not None and rep.position.kafka["topic"] == topic
        assert_replica_equals(pg_dsn, tmp_path / f"r{i}.db")
    shown = run_cli("status", "--target", str(tmp_path / "r0.db"), "--target", str(tmp_path / "r1.db"),
                    "--format", "json")
    assert shown.returncode == 0, shown.stderr
    statuses = json.loads(shown.stdout)
    assert [s["target"] for s in statuses] == [str(tmp_path / "r0.db"), str(tmp_path / "r1.db")]
    assert all(s["kafka"]["topic"] == topic and s["dlq"] == 0 for s in statuses)
    assert statuses[0]["kafka"]["offset"] == statuses[1]["kafka"]["offset"] > 2  # batch records: few offsets


def test_replicas_fan_out_at_their_own_positions_via_cli(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path,
                                                        run_cli) -> None:
    _setup(pg_dsn)
    pub = ("publish", "--source", pg_dsn, "--bootstrap", kafka_bootstrap, "--topic-prefix", "fan",
           "--state", str(tmp_path / "pub.db"), "--until-caught-up")
    assert run_cli(*pub).returncode == 0
    topic = topic_name("fan", _db_name(pg_dsn))

    def replica(name: str) -> None:
        done = run_cli("sync", "--from-kafka", "--bootstrap", kafka_bootstrap, "--source", pg_dsn, "--topic", topic,
                       "--group", name, "--target", str(tmp_path / f"{name}.db"), "--until-caught-up")
        assert done.returncode == 0, done.stdout + done.stderr

    replica("early")
    _writes(pg_dsn, 50)
    published = run_cli(*pub)
    assert published.returncode == 0 and "50 transactions" in published.stdout, published.stdout
    replica("late")
    assert_replica_equals(pg_dsn, tmp_path / "late.db")
    assert diff_replica(pg_dsn, tmp_path / "early.db")  # the early replica is still at its own position
    status = json.loads(run_cli("status", "--target", str(tmp_path / "early.db"), "--target",
                                str(tmp_path / "late.db"), "--format", "json").stdout)
    assert status[0]["kafka"]["offset"] < status[1]["kafka"]["offset"]
    replica("early")
    assert_replica_equals(pg_dsn, tmp_path / "early.db")


def test_records_carry_the_envelope_and_transaction_boundaries(pg_dsn: str, kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    """--envelope row: one Debezium-style record per change, for other consumers."""
    _setup(pg_dsn)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="t2", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None, envelope="row")
    _writes(pg_dsn, 5)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="t2", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None, envelope="row")
    consumer = KafkaPythonConsumer(kafka_bootstrap)
    consumer.seek(topic_name("t2", _db_name(pg_dsn)), 0, 0)
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 2300 + 2 + 5 * 2 and time.monotonic() < deadline:
        got += consumer.poll(timeout=0.5)
    consumer.close()
    kinds = [r.headers["pg2edge.kind"] for r in got]
    assert kinds[:2] == [b"control", b"control"] and kinds.count(b"snapshot") == 2300
    assert [r.key for r in got[:2]] == [b"snapshot-schema", b"snapshot-begin"]
    first_row = next(r for r in got if r.headers["pg2edge.kind"] == b"snapshot")
    assert b'"op":"r"' in first_row.value and first_row.key.startswith(b'{"')
    regroup = Regrouper()
    txns = [i.txn for r in got for i in regroup.feed(r) if hasattr(i, "txn")]
    assert len(txns) >= 5
    assert all(len({e.source.commit_lsn for e in t.events}) == 1 for t in txns)
    assert [t.commit_lsn for t in txns] == sorted(t.commit_lsn for t in txns)


def test_until_caught_up_never_stops_before_reading_what_the_topic_held(pg_dsn: str, kafka_bootstrap: str,
                                                                        tmp_path: Path) -> None:
    """An idle stop (no record for idle_seconds) waits until every record present at start was read:
    a slow first fetch must not end a new replica with nothing applied (exit 0, no tables)."""
    _setup(pg_dsn)
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="idle", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None)


    class SlowFirstFetch(KafkaPythonConsumer):  # the real client; its first polls come back empty, as under load
        empty_polls = 3

        def poll(self, *, timeout: float, max_records: int = 5000):
            if self.empty_polls:
                self.empty_polls -= 1
                time.sleep(timeout)
                return []
            return super().poll(timeout=timeout, max_records=max_records)

    consumer = SlowFirstFetch(kafka_bootstrap)
    try:
        report = run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "r.db", dsn=pg_dsn,
                                   topic=topic_name("idle", _db_name(pg_dsn)), until_caught_up=True,
                                   idle_seconds=0.3, consumer=consumer, say=lambda s: None)
    finally:
        consumer.close()
    assert report.snapshot_rows == 2300
    assert_replica_equals(pg_dsn, tmp_path / "r.db")


def test_snapshot_through_the_topic_uses_the_codec_session_settings(pg_dsn: str, kafka_bootstrap: str,
                                                                    tmp_path: Path) -> None:
    """A source whose defaults are DateStyle 'SQL, DMY' and TimeZone Asia/Kolkata: the snapshot rows in the
    topic carry ISO UTC text (the codec's settings), and the replica stores what a file sync stores."""
    from psycopg import conninfo, sql

    dbname = conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for setting, value in (("DateStyle", "SQL, DMY"), ("TimeZone", "Asia/Kolkata"),
                               ("IntervalStyle", "sql_standard")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(dbname), sql.Identifier(setting), sql.Literal(value)))
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, at timestamptz, d date, iv interval)")
        conn.execute("INSERT INTO t VALUES (1, '2024-01-02 03:04:05.5+00', '2024-03-05', '1 day 02:00:00')")
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="dmy", state_path=tmp_path / "pub.db",
                  until_caught_up=True, say=lambda s: None)
    consumer = KafkaPythonConsumer(kafka_bootstrap)
    consumer.seek(topic_name("dmy", dbname), 0, 0)
    got: list = []
    deadline = time.monotonic() + 20
    while not any(r.headers.get("pg2edge.kind") == b"rows" for r in got) and time.monotonic() < deadline:
        got += consumer.poll(timeout=0.5)
    consumer.close()
    (event,) = json.loads(next(r for r in got if r.headers.get("pg2edge.kind") == b"rows").value)["rows"]
    row = ChangeEvent.from_dict(Regrouper().feed(next(r for r in got if r.headers.get("pg2edge.kind") == b"rows"))[0]
                                .events[0].to_dict()).to_dict()  # type: ignore[union-attr]
    assert event[0] == "r" and event[9] == row["after"]
    assert row["after"] == {"id": "1", "at": "2024-01-02 03:04:05.5+00", "d": "2024-03-05", "iv": "1 day 02:00:00"}
    run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "r.db", dsn=pg_dsn, topic=topic_name("dmy", dbname),
                      until_caught_up=True, say=lambda s: None)
    import apsw

    db = apsw.Connection(str(tmp_path / "r.db"))
    assert db.execute("SELECT id, at, d FROM t").fetchall() == [(1, "2024-01-02 03:04:05.5", "2024-03-05")]
    db.close()
