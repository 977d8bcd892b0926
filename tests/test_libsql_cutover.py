"""Cutover against a remote target (real sqld): check, freeze, drain, unfreeze, teardown.

backup, promote and rollback on remote targets: tests/test_remote_cutover.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from tests.support.edge import SqldServer
from tests.support.rows import pg_rows, run_sql

Cli = Callable[..., CompletedProcess[str]]


def test_cutover_steps_on_a_remote_target(pg_dsn: str, sqld: SqldServer, run_cli: Cli, tmp_path: Path) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    url = sqld.url
    run_sql(pg_dsn, "CREATE TABLE products (id int PRIMARY KEY, name text)",
            "INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 100) g")
    assert run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env).returncode == 0
    assert run_cli("validate", "--source", pg_dsn, "--target", url).returncode == 0
    res = run_cli("cutover", "check", "--source", pg_dsn, "--target", url, "--format", "json")
    gates = {g["name"]: g["status"].lower() for g in json.loads(res.stdout)["gates"]}
    assert gates["replica lag"] == "pass" and gates["row counts equal"] == "pass", res.stdout
    assert gates["last validation"] == "pass" and gates["integrity"] == "pass", res.stdout
    res = run_cli("cutover", "freeze", "--source", pg_dsn, "--target", url)
    assert res.returncode == 0, res.stderr
    refused = run_cli("cutover", "check", "--source", pg_dsn, "--target", url)  # still measurable while frozen
    assert refused.returncode in (0, 1), refused.stderr
    import psycopg

    try:
        run_sql(pg_dsn, "INSERT INTO products VALUES (999, 'write after freeze')")
        raise AssertionError("the frozen source accepted a write")
    except psycopg.Error:
        pass
    assert run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env).returncode == 0
    res = run_cli("cutover", "drain", "--source", pg_dsn, "--target", url, "--timeout", "30")
    assert res.returncode == 0 and "covers the freeze LSN" in res.stdout, res.stdout + res.stderr
    res = run_cli("cutover", "unfreeze", "--source", pg_dsn, "--target", url)
    assert res.returncode == 0, res.stderr
    run_sql(pg_dsn, "INSERT INTO products VALUES (1000, 'writable again')")
    assert pg_rows(pg_dsn, "SELECT count(*) FROM products") == [(101,)]
    # export reads the remote replica into a local file first, then writes the D1 script from it
    res = run_cli("export", "--target", url, "--format", "d1", "--output", str(tmp_path / "x.sql"))
    assert res.returncode == 0 and "1 tables, 100 rows" in res.stdout and url in res.stdout, res.stdout + res.stderr
    script = (tmp_path / "x.sql").read_text()
    assert "'p100'" in script and "_pg2edge_state" not in script
    res = run_cli("export", "--target", url, "--format", "turso", "--output", str(tmp_path / "x.db"))
    assert res.returncode == 0, res.stderr
    import apsw

    exported = apsw.Connection(str(tmp_path / "x.db"))
    assert exported.execute("SELECT count(*), max(name) FROM products").fetchall() == [(100, "p99")]
    exported.close()
    assert not list(tmp_path.glob("http*"))  # no local file named after the URL
    res = run_cli("teardown", "--source", pg_dsn, "--target", url)
    assert res.returncode == 0, res.stderr
    assert pg_rows(pg_dsn, "SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert pg_rows(pg_dsn, "SELECT count(*) FROM pg_publication") == [(0,)]


def test_snapshot_command_into_a_remote(pg_dsn: str, tursodb: object, run_cli: Cli, tmp_path: Path) -> None:
    url = tursodb.url  # type: ignore[attr-defined]
    run_sql(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY, v text)", "INSERT INTO a SELECT g, 'x' FROM generate_series(1, 300) g")
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    res = run_cli("snapshot", "--source", pg_dsn, "--target", url, env=env)
    assert res.returncode == 0, res.stderr
    assert "snapshot of 1 tables, 300 rows into" in res.stdout and "direct" in res.stdout, res.stdout
    again = run_cli("snapshot", "--source", pg_dsn, "--target", url, env=env)
    assert again.returncode == 0 and "already complete" in again.stdout
    res = run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env)
    assert res.returncode == 0 and "0 transactions" in res.stdout, res.stdout + res.stderr
