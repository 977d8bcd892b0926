"""The fixtures themselves: the server is logical-ready, databases are private, the broker answers."""

import time

import psycopg
import pytest

from pg2edge import sample, workload


def test_server_has_logical_decoding(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)


def test_each_test_gets_an_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def _stats(dsn: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname, seq_scan + coalesce(idx_scan, 0), n_tup_ins + n_tup_upd + n_tup_del "
            "FROM pg_stat_user_tables").fetchall()
    return {name: (reads, writes) for name, reads, writes in rows}


def test_sample_workload_hits_the_article_ratios(pg_dsn: str) -> None:
    counts = sample.install(pg_dsn)
    assert set(counts) == set(sample.TABLES) and all(counts.values())
    assert all(writes == 0 for _, writes in _stats(pg_dsn).values()), "load traffic must be reset"
    workload.run(pg_dsn)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _stats(pg_dsn)["audit_logs"][1] == 0:
        time.sleep(0.1)
    stats = _stats(pg_dsn)
    for table, load in workload.PROFILE.items():
        reads, writes = stats[table]
        assert writes > 0, table
        assert reads / writes == pytest.approx(load.ratio, rel=0.05), table


def test_kafka_broker_answers(kafka_bootstrap: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        meta = producer.send("pg2edge.harness", b"ping").get(timeout=30)
        assert meta.topic == "pg2edge.harness" and meta.offset >= 0
    finally:
        producer.close()
