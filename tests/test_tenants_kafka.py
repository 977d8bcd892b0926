"""Database-per-tenant over Kafka: a topic partitioned by tenant -> tenant files (real broker, PostgreSQL, SQLite)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import pytest

from pg2edge.config import TenantsConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline.kafka.client import KafkaPythonConsumer, KafkaPythonProducer, ensure_topic
from pg2edge.pipeline.kafka.partitioning import partition_of
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.kafka.records import Regrouper, SnapshotItem, TxnItem, topic_name
from pg2edge.pipeline.kafka.replica import run_kafka_replica
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.tenants.admin import list_tenants
from pg2edge.pipeline.tenants.kafka_replica import hub_path, run_tenant_kafka_replica
from tests.support.replica import wait_until
from tests.support.rows import file_rows, pg_rows, run_sql

pytestmark = pytest.mark.kafka

PARTS = 4
SCHEMA = ("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",
          "CREATE TABLE plans (id int PRIMARY KEY, name text)",
          "INSERT INTO plans VALUES (1, 'free'), (2, 'pro')",
          "INSERT INTO notes SELECT 't' || (g % 50), g, 'note ' || g FROM generate_series(1, 1000) g")


def _quiet(_: str) -> None:
    pass


def _config(tmp_path: Path) -> TenantsConfig:
    return TenantsConfig(pattern=str(tmp_path / "tenants" / "{tenant}.db"),
                         shared_path=str(tmp_path / "tenants" / "_shared.db"), shared="every", max_open=8)


def _publish(dsn: str, bootstrap: str, tmp_path: Path, *, partitions: int = PARTS, prefix: str = "tk",
             envelope: str = "batch") -> None:
    run_publisher(dsn=dsn, bootstrap=bootstrap, topic_prefix=prefix, state_path=tmp_path / "pub.db",
                  tenant_column="tenant_id", partitions=partitions, until_caught_up=True, say=_quiet,
                  envelope=envelope)


def _consume(dsn: str, bootstrap: str, cfg: TenantsConfig, partitions: list[int] | None = None, metrics=None):
    return run_tenant_kafka_replica(bootstrap=bootstrap, dsn=dsn, tenants=cfg, topic_prefix="tk",
                                    partitions=partitions, until_caught_up=True, idle_seconds=1.0, say=_quiet,
                                    metrics=metrics)


def _assert_split(dsn: str, cfg: TenantsConfig, *, notes: str = "tenant_id, id, body",
                  plans: str = "id, name") -> None:
    """Every tenant file holds its slice of ``notes`` and all of ``plans`` (those columns); each hub the shared
    rows only."""
    tenants = [r[0] for r in pg_rows(dsn, "SELECT DISTINCT tenant_id FROM notes ORDER BY 1")]
    files = list_tenants(cfg.pattern)
    assert set(tenants) <= set(files)
    shared = pg_rows(dsn, f"SELECT {plans} FROM plans ORDER BY id")
    for tenant, tf in files.items():
        want = pg_rows(dsn, f"SELECT {notes} FROM notes WHERE tenant_id = %s ORDER BY id", (tenant,))
        assert file_rows(tf.path, f"SELECT {notes} FROM notes ORDER BY id") == want, tenant
        assert file_rows(tf.path, f"SELECT {plans} FROM plans ORDER BY id") == shared, tenant
    for p in range(PARTS):
        hub = hub_path(cfg.shared_path, p)
        assert file_rows(hub, f"SELECT {plans} FROM plans ORDER BY id") == shared, hub
        assert file_rows(hub, "SELECT count(*) FROM notes") == [(0,)], hub


def _split_equal(dsn: str, cfg: TenantsConfig, **columns: str) -> bool:
    """:func:`_assert_split` as a condition to wait for (False while the replica is still behind)."""
    if not all(hub_path(cfg.shared_path, p).exists() for p in range(PARTS)):
        return False  # reading a hub the replica has not made yet would create it
    try:
        _assert_split(dsn, cfg, **columns)
        return True
    except (AssertionError, apsw.Error):
        return False


def _moving_pair() -> tuple[str, str]:
    """Two tenants of the sample whose partitions differ (a move crosses partitions)."""
    for i in range(50):
        for j in range(50):
            if partition_of(f"t{i}", PARTS) != partition_of(f"t{j}", PARTS):
                return f"t{i}", f"t{j}"
    raise AssertionError("every tenant hashes to one partition")


def _partition_records(bootstrap: str, topic: str) -> dict[int, list]:
    consumer = KafkaPythonConsumer(bootstrap)
    out: dict[int, list] = {}
    try:
        for p in range(PARTS):
            consumer.seek(topic, p, 0)
        idle = time.monotonic()
        while time.monotonic() - idle < 1.5:
            got = consumer.poll(timeout=0.3)
            if got:
                idle = time.monotonic()
            for r in got:
                out.setdefault(r.partition, []).append(r)
    finally:
        consumer.close()
    return out


def test_tenant_partitions_snapshot_cdc_and_split_consumers(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    run_sql(pg_dsn, *SCHEMA)
    _publish(pg_dsn, kafka_bootstrap, tmp_path)
    cfg = _config(tmp_path)
    # two consumers share the topic: partitions 0-1, then 2-3 (e.g. two edges); each owns its tenants
    first = _consume(pg_dsn, kafka_bootstrap, cfg, [0, 1])
    owned = {t for t in list_tenants(cfg.pattern)}
    assert owned and all(partition_of(t, PARTS) in (0, 1) for t in owned)
    second = _consume(pg_dsn, kafka_bootstrap, cfg, [2, 3])
    assert first.snapshot_rows + second.snapshot_rows == 1000 + 2 * PARTS  # shared rows reach every partition
    assert len(list_tenants(cfg.pattern)) == 50
    _assert_split(pg_dsn, cfg)

    old, new = _moving_pair()
    run_sql(pg_dsn,
         "INSERT INTO notes SELECT 't' || (g % 50), g, 'more ' || g FROM generate_series(1001, 1400) g",
         "UPDATE notes SET body = body || ' (edited)' WHERE id % 7 = 0",
         "DELETE FROM notes WHERE id % 11 = 0",
         "INSERT INTO notes VALUES ('brand-new', 1, 'first note of a new tenant')",
         "UPDATE plans SET name = 'enterprise' WHERE id = 2",
         "INSERT INTO plans VALUES (3, 'team')")
    moved = pg_rows(pg_dsn, "SELECT id FROM notes WHERE tenant_id = %s ORDER BY id LIMIT 1", (old,))[0][0]
    run_sql(pg_dsn, "UPDATE notes SET tenant_id = %s WHERE tenant_id = %s AND id = %s", params=(new, old, moved))
    _publish(pg_dsn, kafka_bootstrap, tmp_path)
    metrics = Metrics()
    report = _consume(pg_dsn, kafka_bootstrap, cfg, metrics=metrics)  # now one consumer of every partition
    applied = metrics.registry.get_sample_value
    # 400 + 1 inserts, and the move crossed partitions: a delete in one, an insert in the other
    assert applied("pg2edge_applied_changes_total", {"table": "public.notes", "op": "c"}) == 402
    assert applied("pg2edge_applied_changes_total", {"table": "public.plans", "op": "c"}) == PARTS  # each partition
    assert applied("pg2edge_batch_apply_seconds_count") >= 1
    assert report.tenants_created == 1 and "brand-new" in list_tenants(cfg.pattern)
    assert file_rows(list_tenants(cfg.pattern)[new].path, "SELECT count(*) FROM notes WHERE id = %d" % moved) == [(1,)]
    _assert_split(pg_dsn, cfg)

    # the topic itself: each tenant's records in its partition, shared rows in every partition
    records = _partition_records(kafka_bootstrap, topic_name("tk", pg_rows(pg_dsn, "SELECT current_database()")[0][0]))
    assert sorted(records) == list(range(PARTS))
    for p, recs in records.items():
        plans = 0
        regroup = Regrouper()
        events = [ev for r in recs for item in regroup.feed(r)
                  for ev in (item.txn.events if isinstance(item, TxnItem) else
                             item.events if isinstance(item, SnapshotItem) else ())]
        for ev in events:
            table, row = ev.source.table, ev.after or ev.before
            if table == "notes":
                assert partition_of(row["tenant_id"], PARTS) == p, (p, row)
            else:
                plans += 1
        assert plans == 2 + 2, p  # 2 snapshot rows + 1 update + 1 insert of the shared table


def test_plain_replica_and_changed_partitioning_are_refused(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    run_sql(pg_dsn, *SCHEMA)
    _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="tr")
    with pytest.raises(ConfigError, match=r"has 4 partition\(s\).*--tenant-column.*--tenant-pattern"):
        run_kafka_replica(bootstrap=kafka_bootstrap, target=tmp_path / "plain.db", dsn=pg_dsn, topic_prefix="tr",
                          until_caught_up=True, idle_seconds=1.0, say=_quiet)
    with pytest.raises(ConfigError, match="partitioned as .* but .* was asked"):
        _publish(pg_dsn, kafka_bootstrap, tmp_path, partitions=2, prefix="tr")
    with pytest.raises(ConfigError, match="no partition 9"):
        run_tenant_kafka_replica(bootstrap=kafka_bootstrap, dsn=pg_dsn, tenants=_config(tmp_path), topic_prefix="tr",
                                 partitions=[9], until_caught_up=True, say=_quiet)


def _hub_offsets(cfg: TenantsConfig) -> list[int]:
    out = []
    for p in range(PARTS):
        path = hub_path(cfg.shared_path, p)
        pos = []
        for _ in range(100):
            try:
                pos = file_rows(path, "SELECT value FROM _pg2edge_state WHERE scope = 'position'") if path.exists() else []
                break
            except (apsw.SQLError, apsw.BusyError):  # the replica is creating or writing the hub right now
                time.sleep(0.02)
        out.append(json.loads(pos[0][0])["kafka"]["offset"] if pos else -1)
    return out


@pytest.mark.slow
def test_tenant_replica_killed_mid_stream_ends_equal(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path,
                                                     run_cli) -> None:
    run_sql(pg_dsn, *SCHEMA)
    _publish(pg_dsn, kafka_bootstrap, tmp_path, envelope="row")  # per-row records: slow enough to kill mid-stream
    # 12,000 transactions of 5 changes across tenants, committed one by one inside the server
    run_sql(pg_dsn, """
        CREATE PROCEDURE churn(n int) LANGUAGE plpgsql AS $$
        BEGIN
          FOR i IN 0 .. n - 1 LOOP
            INSERT INTO notes SELECT 't' || ((i + g) % 50), 10000 + i * 5 + g, 'k' FROM generate_series(0, 2) g;
            UPDATE notes SET body = body || '.' WHERE id = i % 1000 + 1;
            DELETE FROM notes WHERE id = 10000 + (i - 1) * 5;
            COMMIT;
          END LOOP;
        END $$""", "CALL churn(12000)")
    _publish(pg_dsn, kafka_bootstrap, tmp_path)
    cfg = _config(tmp_path)
    (tmp_path / "pg2edge.toml").write_text(
        f"[tenants]\npattern = {cfg.pattern!r}\nshared_path = {cfg.shared_path!r}\nmax_open = 8\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "pg2edge", "sync", "--config", str(tmp_path / "pg2edge.toml"), "--source", pg_dsn,
            "--from-kafka", "--bootstrap", kafka_bootstrap, "--tenant-pattern", cfg.pattern, "--topic",
            topic_name("tk", pg_rows(pg_dsn, "SELECT current_database()")[0][0])]
    kills, offsets = 0, [_hub_offsets(cfg)]
    for extra in (0.0, 0.3, 0.6, 0.9, 1.2):
        # kill once the replica has moved on since the last kill (a fixed delay misses on a loaded machine)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _hub_offsets(cfg) == offsets[-1] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(extra)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
        offsets.append(_hub_offsets(cfg))
    offsets = offsets[1:]
    assert kills >= 3
    assert sum(o != offsets[-1] for o in offsets) >= 2, f"fewer than two kills landed mid-stream: {offsets}"
    done = run_cli("sync", "--config", str(tmp_path / "pg2edge.toml"), "--source", pg_dsn, "--from-kafka",
                   "--bootstrap", kafka_bootstrap, "--tenant-pattern", cfg.pattern, "--until-caught-up",
                   "--topic", args[-1])
    assert done.returncode == 0, done.stderr
    _assert_split(pg_dsn, cfg)


# -- edge tenant replicas that need only the broker (issue 15) ---------------------------------------
def _db(dsn: str) -> str:
    return pg_rows(dsn, "SELECT current_database()")[0][0]


@pytest.mark.slow
def test_tenant_replica_without_a_dsn_started_before_the_publisher(pg_dsn: str, kafka_bootstrap: str,
                                                                    tmp_path: Path) -> None:
    """`sync --from-kafka --tenant-pattern` with no --source anywhere, started before the topic exists: tables,
    codecs and the tenant layout come from the topic's schema records; the tenant files end equal to the source."""
    run_sql(pg_dsn, *SCHEMA)
    cfg = _config(tmp_path)
    topic = topic_name("nd", _db(pg_dsn))
    config = tmp_path / "edge.toml"  # no [source]
    config.write_text(f"[tenants]\npattern = {cfg.pattern!r}\nshared_path = {cfg.shared_path!r}\nshared = 'every'\n"
                      "max_open = 8\n")
    env = {k: v for k, v in os.environ.items() if k != "PG2EDGE_SOURCE"}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), PYTHONUNBUFFERED="1")
    log = tmp_path / "edge.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--config", str(config), "--from-kafka",
                                 "--bootstrap", kafka_bootstrap, "--topic", topic, "--tenant-pattern", cfg.pattern],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: f"waiting for topic {topic}" in log.read_text(), timeout=60, every=0.2)
        _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="nd")
        old, new = _moving_pair()
        run_sql(pg_dsn,
                "INSERT INTO notes SELECT 't' || (g % 50), g, 'more ' || g FROM generate_series(1001, 1200) g",
                "UPDATE notes SET body = body || ' (edited)' WHERE id % 7 = 0",
                "DELETE FROM notes WHERE id % 11 = 0",
                "INSERT INTO notes VALUES ('edge-new', 1, 'a tenant that appeared after the snapshot')",
                "UPDATE plans SET name = 'enterprise' WHERE id = 2")
        run_sql(pg_dsn, "UPDATE notes SET tenant_id = %s WHERE tenant_id = %s AND id = 50", params=(new, old))
        _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="nd")
        wait_until(lambda: _split_equal(pg_dsn, cfg), timeout=180, every=1.0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "tenant sync --from-kafka stopped" in text and "0 parked" in text, text[-3000:]
    assert "edge-new" in list_tenants(cfg.pattern)
    _assert_split(pg_dsn, cfg)


@pytest.mark.slow
def test_a_schema_change_reaches_the_tenant_files_without_a_dsn(pg_dsn: str, kafka_bootstrap: str,
                                                                 tmp_path: Path) -> None:
    """ADD COLUMN on a tenant table and on a shared table while the replica streams, no DSN: the first change
    after it touches one tenant (so only its partition gets PostgreSQL's Relation message); the schema records
    every partition gets carry the new shape to every tenant file, and to tenant files made after it."""
    run_sql(pg_dsn, *SCHEMA)
    cfg = _config(tmp_path)
    topic = topic_name("sc", _db(pg_dsn))
    stop = threading.Event()
    said: list[str] = []
    result: list[object] = []

    def run() -> None:
        try:
            result.append(run_tenant_kafka_replica(bootstrap=kafka_bootstrap, tenants=cfg, topic=topic, stop=stop,
                                                   say=said.append))
        except Exception as exc:  # noqa: BLE001 - the test names it
            result.append(exc)

    def equal(**columns: str) -> bool:
        assert not result, result  # the replica stopped on its own (an error)
        return _split_equal(pg_dsn, cfg, **columns)

    replica = threading.Thread(target=run)
    replica.start()
    try:
        wait_until(lambda: any(line.startswith(f"waiting for topic {topic}") for line in said), timeout=60)
        _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="sc")
        wait_until(equal, timeout=120, every=0.5)
        run_sql(pg_dsn, "ALTER TABLE notes ADD COLUMN rank int", "ALTER TABLE plans ADD COLUMN seats int",
                "UPDATE notes SET rank = id WHERE tenant_id = 't1'",
                "UPDATE notes SET rank = id % 5, body = body || '!' WHERE id % 3 = 0",
                "INSERT INTO notes VALUES ('late', 1, 'after the alter', 7)",
                "UPDATE plans SET seats = 10 * id")
        _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="sc")
        wait_until(lambda: equal(notes="tenant_id, id, body, rank", plans="id, name, seats"), timeout=120, every=0.5)
    finally:
        stop.set()
        replica.join(60)
    assert result and result[0].stopped_by == "stop requested", result  # type: ignore[attr-defined]
    _assert_split(pg_dsn, cfg, notes="tenant_id, id, body, rank", plans="id, name, seats")
    files = list_tenants(cfg.pattern)
    assert "late" in files and len(files) == 51
    quiet = [t for t in files if t != "t1" and partition_of(t, PARTS) != partition_of("t1", PARTS)]
    assert quiet  # tenants of partitions that never saw a Relation message for the new shape
    for tenant in quiet:
        assert "rank" in [r[1] for r in file_rows(files[tenant].path, "PRAGMA table_info(notes)")], tenant


def test_a_topic_without_pg2edge_schema_records_is_named(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    """Without a DSN: a topic whose snapshot has no schema record stops the replica naming topic, partition and
    offset; a schema record that is not one pg2edge reads is parked in the hub's DLQ by the same names."""
    run_sql(pg_dsn, *SCHEMA)
    _publish(pg_dsn, kafka_bootstrap, tmp_path, prefix="ns")
    recs = _partition_records(kafka_bootstrap, topic_name("ns", _db(pg_dsn)))
    schema_keys = (b"snapshot-schema", b"schema")

    def copy(topic: str, keep) -> None:
        ensure_topic(kafka_bootstrap, topic, partitions=PARTS)
        producer = KafkaPythonProducer(kafka_bootstrap)
        for p, rs in recs.items():
            for r in rs:
                value = keep(r)
                if value is not None:
                    producer.send(topic, value=value, key=r.key, headers=list(r.headers.items()), partition=p)
        producer.flush()
        producer.close()

    copy("ns.legacy", lambda r: None if r.key in schema_keys else r.value)
    with pytest.raises(ConfigError, match=r"topic ns.legacy partition \d offset 0: no schema record .*--source"):
        run_tenant_kafka_replica(bootstrap=kafka_bootstrap, tenants=_config(tmp_path), topic="ns.legacy",
                                 until_caught_up=True, idle_seconds=1.0, say=_quiet)

    def newer(r) -> bytes | None:
        if r.key not in schema_keys:
            return r.value
        return json.dumps({**json.loads(r.value), "v": 99}).encode()

    copy("ns.newer", newer)
    cfg = _config(tmp_path / "newer")
    with pytest.raises(ConfigError, match=r"topic ns.newer partition \d offset 1: no schema record"):
        run_tenant_kafka_replica(bootstrap=kafka_bootstrap, tenants=cfg, topic="ns.newer", until_caught_up=True,
                                 idle_seconds=1.0, say=_quiet)
    hubs = [hub_path(cfg.shared_path, p) for p in range(PARTS) if hub_path(cfg.shared_path, p).exists()]
    parked = [row[0] for hub in hubs if file_rows(hub, "SELECT 1 FROM sqlite_schema WHERE name = '_pg2edge_queue'")
              for row in file_rows(hub, "SELECT error FROM _pg2edge_queue")]
    assert parked and all(re.match(r"topic ns.newer partition \d offset 0: .*format version 99", e) for e in parked)


def test_cli_refuses_bad_partition_options(run_cli) -> None:
    out = run_cli("publish", "--source", "postgresql://nobody@127.0.0.1:1/x", "--bootstrap", "127.0.0.1:1",
                  "--partitions", "4")
    assert out.returncode == 2 and "--partitions needs --tenant-column" in out.stderr
    out = run_cli("sync", "--source", "postgresql://nobody@127.0.0.1:1/x", "--from-kafka", "--bootstrap",
                  "127.0.0.1:1", "--tenant-pattern", "t/{tenant}.db", "--consume-partitions", "0-x")
    assert out.returncode == 2 and "--consume-partitions '0-x'" in out.stderr
    out = run_cli("sync", "--from-kafka", "--bootstrap", "127.0.0.1:1", "--tenant-pattern", "t/{tenant}.db")
    assert out.returncode == 2 and "give --topic or --source" in out.stderr, out.stderr
