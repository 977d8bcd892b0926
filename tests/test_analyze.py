"""Phase 1 against a real PostgreSQL: verdicts, window, blockers, errors, reports."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from pg2edge.analyzers import analyze, render
from pg2edge.config import AnalyzeConfig
from pg2edge.errors import EmptyStatsError

EXPECTED = {
    "products": "excellent", "categories": "excellent", "blog_posts": "excellent",
    "user_preferences": "good", "sessions": "maybe",
    "orders": "keep", "inventory": "keep", "audit_logs": "keep",
}


def _flush(dsn: str, table: str, *, writes: int = 0, reads: int = 0, timeout: float = 5.0) -> None:
    """Wait until the statistics show at least these counts (backends flush at exit, ~1 s at most)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT seq_scan + coalesce(idx_scan, 0), n_tup_ins + n_tup_upd + n_tup_del "
                "FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()
            if row and row[0] >= reads and row[1] >= writes:
                return
            time.sleep(0.05)
    raise AssertionError(f"statistics for {table} did not reach reads={reads} writes={writes}")


def test_sample_workload_verdicts_through_the_cli(shop_dsn: str, run_cli) -> None:
    _flush(shop_dsn, "audit_logs", writes=10_000)
    result = run_cli("analyze", "--source", shop_dsn, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    verdicts = {t["table"]: t["verdict"] for t in data["tables"]}
    assert verdicts == EXPECTED
    assert set(data) >= {"generated_at", "source", "window_seconds", "tables", "summary"}
    assert data["source"]["database"] and data["source"]["stats_reset"]
    products = next(t for t in data["tables"] if t["table"] == "products")
    assert products["group"] == ["public.categories", "public.products"]
    assert products["rows"] > 0 and products["bytes"] > 0
    assert {w["code"] for w in products["warnings"]} == {"referenced_by_kept_table"}
    assert data["summary"]["read_heavy"] is True
    assert data["summary"]["verdicts"]["excellent"] == 3


def test_reports_in_every_format(shop_dsn: str, tmp_path) -> None:
    _flush(shop_dsn, "audit_logs", writes=10_000)
    report = analyze(shop_dsn)
    assert "public.products" in render(report, "table")
    md = render(report, "markdown")
    assert "| public.sessions |" in md and "maybe" in md
    assert "top_queries" in json.loads(render(report, "json"))["tables"][0]
    page = render(report, "html")
    assert page.count('class="bar reads"') == 8 and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_pg_stat_statements_top_queries(shop_dsn: str) -> None:
    report = analyze(shop_dsn)
    products = report.table("products")
    assert products.top_queries, "the workload's product lookups should be attributed to products"
    assert any("products" in q.query for q in products.top_queries)


def test_read_only_table_is_excellent_and_untouched_is_idle(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ref (id int PRIMARY KEY, name text)")
        conn.execute("CREATE TABLE untouched (id int PRIMARY KEY)")
        conn.execute("INSERT INTO ref SELECT g, 'n' || g FROM generate_series(1, 100) g")
    _flush(pg_dsn, "ref", writes=100)  # the load's counters reached shared memory: now reset them
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_reset()")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(20):
            conn.execute("SELECT name FROM ref WHERE id = 5").fetchone()
    _flush(pg_dsn, "ref", reads=20)
    report = analyze(pg_dsn)
    ref = report.table("ref")
    assert ref.writes == 0 and ref.verdict == "excellent" and ref.as_dict()["ratio"] == "inf"
    untouched = report.table("untouched")
    assert untouched.verdict == "idle" and untouched.as_dict()["ratio"] is None


def test_window_classifies_current_traffic_not_history(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE flip (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO flip VALUES (1, 0)")
        conn.execute("SELECT count((SELECT n FROM flip WHERE id = 1 AND g > 0)) FROM generate_series(1, 50000) g")
    _flush(pg_dsn, "flip", reads=50_000)
    assert analyze(pg_dsn).table("flip").verdict == "excellent"  # history: read-heavy

    def writes_during_window(seconds: float) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO flip SELECT g, 0 FROM generate_series(2, 5001) g")
        # connection closed: its counters are flushed before the second sample
        time.sleep(seconds)

    report = analyze(pg_dsn, config=AnalyzeConfig(window=2.0), sleep=writes_during_window)
    flip = report.table("flip")
    assert report.window_seconds == 2.0
    assert flip.writes == 5000 and flip.reads < 10
    assert flip.verdict == "keep"


def test_named_blockers(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE nokey (a int, b text)")
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, tsv tsvector)")
        conn.execute("CREATE TABLE bookings (id int PRIMARY KEY, during int4range)")
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount int)")
        conn.execute("CREATE TABLE tags (id int PRIMARY KEY, ledger_id int REFERENCES ledger (id))")
        for t in ("nokey", "docs", "bookings", "tags"):
            conn.execute(f"SELECT count(*) FROM {t}")
        conn.execute("INSERT INTO ledger SELECT g, g FROM generate_series(1, 100) g")  # write-heavy: keep
    _flush(pg_dsn, "ledger", writes=100)
    _flush(pg_dsn, "tags", reads=1)
    report = analyze(pg_dsn)

    def codes(name: str) -> set[str]:
        return {b.code for b in report.table(name).blockers}

    assert "no_primary_key" in codes("nokey")
    assert "unsupported_type" in codes("docs") and "tsv" in report.table("docs").blockers[0].message
    assert "unsupported_type" in codes("bookings")
    assert report.table("ledger").verdict == "keep"
    assert "fk_to_kept_table" in codes("tags")
    assert "public.ledger" in next(b.message for b in report.table("tags").blockers if b.code == "fk_to_kept_table")


def test_d1_profile_flags_rows_over_1_mb(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
        conn.execute("ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL")
        conn.execute("INSERT INTO blobs SELECT g, decode(repeat('ab', 1500000), 'hex') FROM generate_series(1, 3) g")
        conn.execute("SELECT count(*) FROM blobs")
    _flush(pg_dsn, "blobs", reads=1, writes=3)
    assert "row_too_large" not in {b.code for b in analyze(pg_dsn).table("blobs").blockers}
    d1 = analyze(pg_dsn, config=AnalyzeConfig(target_profile="d1")).table("blobs")
    assert "row_too_large" in {b.code for b in d1.blockers}


def test_empty_stats_says_what_to_do(pg_dsn: str, run_cli) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE quiet (id int PRIMARY KEY)")  # the index build counts one scan
    _flush(pg_dsn, "quiet", reads=1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_reset()")
    with pytest.raises(EmptyStatsError, match="run the application's workload"):
        analyze(pg_dsn)
    result = run_cli("analyze", "--source", pg_dsn)
    assert result.returncode == 2 and "--window" in result.stderr


def test_unreachable_server_exit_2_without_password(run_cli) -> None:
    from pg2edge.pgcluster import free_port

    port = free_port()
    result = run_cli("analyze", "--source", f"postgresql://app:hunter2-secret@127.0.0.1:{port}/shop")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "database shop" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_missing_connect_privilege_is_named(pg_server, pg_dsn: str, run_cli) -> None:
    from psycopg import conninfo, sql

    dbname = conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    role = f"r_{dbname}"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
    try:
        params = conninfo.conninfo_to_dict(pg_dsn)
        params.update(user=role, password="pw-never-shown")
        result = run_cli("analyze", "--source", conninfo.make_conninfo("", **params))
        assert result.returncode == 2
        assert "CONNECT privilege" in result.stderr and dbname in result.stderr
        assert "pw-never-shown" not in result.stderr
    finally:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_verdict_thresholds_come_from_the_config_file(shop_dsn: str, run_cli, tmp_path) -> None:
    (tmp_path / "pg2edge.toml").write_text("[analyze.verdicts]\nexcellent = 50000\ngood = 20\nmaybe = 1\n")
    result = run_cli("analyze", "--source", shop_dsn, "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    verdicts = {t["table"]: t["verdict"] for t in json.loads(result.stdout)["tables"]}
    assert verdicts["categories"] == "excellent"  # 100000:1
    assert verdicts["products"] == "good"  # 10000:1 is below 50000 now
    assert verdicts["user_preferences"] == "maybe"  # 10:1 is below 20
    assert verdicts["orders"] == "maybe"  # 1:1 reaches maybe = 1
    assert verdicts["audit_logs"] == "keep"
