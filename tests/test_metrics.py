"""Prometheus metrics of the publisher and the tenant daemon: real PostgreSQL, real broker, real endpoint."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pg2edge.config import TenantsConfig
from pg2edge.pgcluster import free_port
from pg2edge.pipeline.kafka.publisher import run_publisher
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.tenants.daemon import run_tenant_sync
from tests.support.rows import run_sql


def _quiet(_: str) -> None:
    pass


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _changes(samples: dict, name: str, table: str) -> dict[str, float]:
    return {dict(labels)["op"]: v for (n, labels), v in samples.items()
            if n == name and dict(labels).get("table") == table}


@pytest.mark.kafka
def test_publisher_endpoint_counts_published_changes_lag_and_retained_wal(pg_dsn: str, kafka_bootstrap: str,
                                                                         tmp_path: Path) -> None:
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (0, 'before')")
    state_path = tmp_path / "pub.db"
    run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="m1", state_path=state_path,
                  until_caught_up=True, say=_quiet)  # the snapshot: not counted as published changes
    run_sql(pg_dsn, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 30) g",
         *[f"UPDATE t SET v = 'y' WHERE id = {i}" for i in range(1, 6)], "DELETE FROM t WHERE id = 0")
    metrics = Metrics(role="publisher")
    port = free_port()
    metrics.serve(port)
    report = run_publisher(dsn=pg_dsn, bootstrap=kafka_bootstrap, topic_prefix="m1", state_path=state_path,
                           until_caught_up=True, say=_quiet, metrics=metrics)
    assert report.transactions == 7
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = _samples(text)
    assert _changes(samples, "pg2edge_published_changes_total", "public.t") == {"c": 30.0, "u": 5.0, "d": 1.0}
    assert samples[("pg2edge_published_transactions_total", ())] == 7.0
    assert samples[("pg2edge_batch_publish_seconds_count", ())] > 0
    assert samples[("pg2edge_retained_wal_bytes", ())] > 0  # the slot pins at least the WAL written above
    assert samples[("pg2edge_lag_seconds", ())] >= 0 and samples[("pg2edge_lag_bytes", ())] >= 0
    # a publisher applies nothing and has no retry queue: those families are not exposed
    assert "pg2edge_applied_changes" not in text and "pg2edge_dlq_depth" not in text


def test_lag_is_commit_age_until_a_heartbeat_passes_the_last_commit() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    now = 1_700_000_100.0
    metrics.record_lag(reached_lsn=900, server_wal_end=1500, commit_end_lsn=900, commit_ts_ms=1_700_000_000_000,
                       now=now)
    assert value("pg2edge_lag_seconds") == 100.0 and value("pg2edge_lag_bytes") == 600.0
    metrics.record_lag(reached_lsn=1200, server_wal_end=1500, commit_end_lsn=900, commit_ts_ms=1_700_000_000_000,
                       now=now)  # a heartbeat at 1200 passed the commit: nothing is pending
    assert value("pg2edge_lag_seconds") == 0.0 and value("pg2edge_lag_bytes") == 300.0
    metrics.record_lag(reached_lsn=1600, server_wal_end=0, commit_end_lsn=None, commit_ts_ms=None, now=now)
    assert value("pg2edge_lag_bytes") == 300.0  # no WAL end from the server yet: the last value stays


TENANT_SCHEMA = ("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",
                 "CREATE TABLE plans (id int PRIMARY KEY, name text)",
                 "INSERT INTO plans VALUES (1, 'free')",
                 "INSERT INTO notes SELECT 't' || (g % 3), g, 'note ' || g FROM generate_series(1, 30) g")


def test_tenant_daemon_reports_routed_changes_by_table_and_op(pg_dsn: str, tmp_path: Path) -> None:
    run_sql(pg_dsn, *TENANT_SCHEMA)
    cfg = TenantsConfig(pattern=str(tmp_path / "tenants" / "{tenant}.db"),
                        shared_path=str(tmp_path / "tenants" / "_shared.db"))
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "INSERT INTO notes SELECT 't' || (g % 3), g, 'new' FROM generate_series(101, 120) g",
         "UPDATE notes SET body = 'edited' WHERE id <= 4",
         "UPDATE notes SET tenant_id = 't0' WHERE tenant_id = 't1' AND id = 7",  # a tenant move: one source update
         "DELETE FROM notes WHERE id IN (10, 11)",
         "INSERT INTO plans VALUES (2, 'pro')")
    metrics = Metrics()
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet, metrics=metrics)
    assert report.transactions == 5
    value = metrics.registry.get_sample_value
    for table, op, n in (("public.notes", "c", 20), ("public.notes", "u", 5), ("public.notes", "d", 2),
                         ("public.plans", "c", 1)):
        assert value("pg2edge_applied_changes_total", {"table": table, "op": op}) == n, (table, op)
    assert value("pg2edge_applied_changes_total", {"table": "public.plans", "op": "u"}) is None
    assert value("pg2edge_applied_transactions_total") == 5
    assert value("pg2edge_batch_apply_seconds_count") > 0
    assert value("pg2edge_retained_wal_bytes") > 0
    assert value("pg2edge_lag_seconds") is not None and value("pg2edge_lag_bytes") is not None


def test_cli_tenant_sync_serves_metrics(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, *TENANT_SCHEMA)
    done = run_cli("sync", "--source", pg_dsn, "--tenant-pattern", str(tmp_path / "t" / "{tenant}.db"),
                   "--metrics-port", str(free_port()), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert "tenant sync stopped (caught up)" in done.stdout


@pytest.mark.kafka
def test_cli_publish_accepts_metrics_port(pg_dsn: str, kafka_bootstrap: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    done = run_cli("publish", "--source", pg_dsn, "--bootstrap", kafka_bootstrap, "--topic-prefix", "m2",
                   "--state", str(tmp_path / "pub.db"), "--metrics-port", str(free_port()), "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert "publish stopped (caught up)" in done.stdout
