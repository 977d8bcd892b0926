"""`pg2edge translate query`: error findings are errors; column types come from the replica at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from pg2edge.translators.query import translate_sql


def test_error_finding_is_not_printed_and_exits_1(run_cli: Any) -> None:
    sql = "SELECT slug FROM blog_posts WHERE to_tsvector('english', body) @@ to_tsquery('lorem')"
    out = run_cli("translate", "query", sql)
    assert out.returncode == 1
    assert out.stdout == ""  # nothing that looks runnable (no MATCH ... AGAINST)
    assert "error fulltext" in out.stderr and "--allow-errors" in out.stderr


def test_allow_errors_prints_the_sql_marked(run_cli: Any) -> None:
    out = run_cli("translate", "query", "--allow-errors", "SELECT * FROM t WHERE name LIKE $1")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.startswith("-- pg2edge: 1 error finding(s)")
    assert second == "SELECT * FROM t WHERE name LIKE ?1;"
    assert "error like_case" in out.stderr


def test_warnings_still_print_and_exit_0(run_cli: Any) -> None:
    out = run_cli("translate", "query", "SELECT initcap(name) FROM t")
    assert out.returncode == 0 and "INITCAP" in out.stdout and "warn unsupported_function" in out.stderr


def test_library_returns_the_findings() -> None:
    result = translate_sql("SELECT * FROM t WHERE doc @@ to_tsquery('x')")
    assert result.errors and {f.code for f in result.errors} == {"fulltext"}


def test_target_reads_the_types_the_replica_recorded(shop_dsn: str, run_cli: Any, tmp_path: Path) -> None:
    replica = tmp_path / "edge.db"
    made = run_cli("translate", "schema", "--source", shop_dsn, "--target", str(replica))
    assert made.returncode == 0, made.stderr
    sql = "SELECT id FROM orders WHERE status < 'shipped' AND total > 10 ORDER BY status, id"
    # no --source and no PG2EDGE_SOURCE: the types come from the replica file only
    out = run_cli("translate", "query", "--target", str(replica), sql)
    assert out.returncode == 0, out.stderr
    assert "CAST(total AS REAL) > 10" in out.stdout
    assert "CASE status WHEN 'pending' THEN 0 WHEN 'paid' THEN 1 WHEN 'shipped' THEN 2" in out.stdout
    assert "enum_order" not in out.stderr
    plain = run_cli("translate", "query", sql)
    assert "CAST(total AS REAL)" not in plain.stdout and "CASE status" not in plain.stdout


def test_target_without_recorded_types_is_named(run_cli: Any, tmp_path: Path) -> None:
    bare = tmp_path / "bare.db"
    apsw.Connection(str(bare)).execute("CREATE TABLE t (a)")
    out = run_cli("translate", "query", "--target", str(bare), "SELECT a FROM t")
    assert out.returncode == 2
    assert "no recorded source column types" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = run_cli("translate", "query", "--target", str(tmp_path / "nope.db"), "SELECT 1")
    assert missing.returncode == 2 and "nope.db does not exist" in missing.stderr
