"""Cutover backup, promote and rollback on remote targets: real sqld and tursodb (libSQL over Hrana) and real
D1 (workerd).

The application's writes after promote are made on the remote database itself (a Hrana client on
sqld, the Worker on D1); rollback must carry them back to PostgreSQL. The backup is a local SQLite
file read back with apsw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import apsw
import psycopg
import pytest

from pg2edge.pipeline.remote import connect, parse_target
from tests.support.d1 import LocalD1
from tests.support.edge import JwtKey, SqldServer, TursoServer
from tests.support.rows import pg_rows, run_sql

Cli = Callable[..., CompletedProcess[str]]


def _app_writes(url: str, token: str | None) -> None:
    """What the application does on the promoted replica: an insert, an update, a delete."""
    conn = connect(parse_target(url, token=token))
    try:
        with conn:
            conn.execute("INSERT INTO products (id, name) VALUES (?, ?)", (2000, "made on the edge"))
            conn.execute("UPDATE products SET name = ? WHERE id = ?", ("renamed on the edge", 1))
            conn.execute("DELETE FROM products WHERE id = ?", (2,))
    finally:
        conn.close()


def _backup_rows(path: Path) -> tuple[int, int | None]:
    db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        count = db.execute("SELECT count(*) FROM products").fetchone()[0]  # type: ignore[index]
        pos = db.execute("SELECT json_extract(value, '$.commit_lsn') FROM _pg2edge_state "
                         "WHERE scope = 'position' AND name = 'applied'").fetchone()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(count), None if pos is None else int(pos[0])
    finally:
        db.close()


def _full_cycle(pg_dsn: str, url: str, run_cli: Cli, tmp_path: Path, env: dict[str, str], token: str | None) -> None:
    run_sql(pg_dsn, "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), big bigint)",
            "INSERT INTO products SELECT g, 'p' || g, g * 1.5, 9007199254740993 + g "
            "FROM generate_series(1, 1200) g")
    res = run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env)
    assert res.returncode == 0, res.stderr
    assert run_cli("validate", "--source", pg_dsn, "--target", url, env=env).returncode == 0

    # backup: a consistent local copy (more rows than one read page), recorded on the remote
    out = tmp_path / "before.db"
    res = run_cli("cutover", "backup", "--target", url, "--output", str(out), env=env)
    assert res.returncode == 0 and f"backed up {url} to {out}" in res.stdout, res.stdout + res.stderr
    count, lsn = _backup_rows(out)
    assert count == 1200 and lsn is not None
    db = apsw.Connection(str(out))
    assert db.execute("SELECT big FROM products WHERE id = 7").fetchone() == (9007199254740993 + 7,)  # exact
    db.close()
    again = run_cli("cutover", "backup", "--target", url, "--output", str(out), env=env)
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    check = run_cli("cutover", "check", "--source", pg_dsn, "--target", url, "--format", "json", env=env)
    gates = {g["name"]: g for g in json.loads(check.stdout)["gates"]}
    assert gates["backup exists"]["status"] == "PASS" and gates["backup exists"]["measured"] == str(out.resolve())

    # freeze, drain, promote (its own backup, in the current directory), the app writes on the edge
    assert run_cli("cutover", "freeze", "--source", pg_dsn, "--target", url, env=env).returncode == 0
    with pytest.raises(psycopg.Error):
        run_sql(pg_dsn, "INSERT INTO products (id, name) VALUES (999, 'write after freeze')")
    res = run_cli("cutover", "drain", "--source", pg_dsn, "--target", url, "--timeout", "30", env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("cutover", "promote", "--source", pg_dsn, "--target", url, env=env)
    assert res.returncode == 0, res.stderr
    assert "backed up the replica to" in res.stdout and "capturing replica writes" in res.stdout, res.stdout
    assert len(list(tmp_path.glob("*.backup-*.db"))) == 1  # the default backup path of a URL: ./<host>.backup-…
    again = run_cli("cutover", "promote", "--source", pg_dsn, "--target", url, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr  # idempotent
    _app_writes(url, token)

    # rollback: the edge's writes go back to PostgreSQL, the source is writable, capture stops
    res = run_cli("cutover", "rollback", "--source", pg_dsn, "--target", url, env=env)
    assert res.returncode == 0, res.stderr
    assert "replayed 3 replica write(s) to public.products on PostgreSQL" in res.stdout, res.stdout
    assert pg_rows(pg_dsn, "SELECT name FROM products WHERE id IN (1, 2, 2000) ORDER BY id") == [
        ("renamed on the edge",), ("made on the edge",)]
    run_sql(pg_dsn, "INSERT INTO products (id, name) VALUES (3000, 'writable again')")
    conn = connect(parse_target(url, token=token))
    try:
        triggers = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                "AND name LIKE '_pg2edge_log_%'").fetchone()
        assert triggers == (0,)
        assert conn.execute("SELECT count(*) FROM _pg2edge_changelog WHERE replayed_at IS NULL").fetchone() == (0,)
    finally:
        conn.close()
    again = run_cli("cutover", "rollback", "--source", pg_dsn, "--target", url, env=env)
    assert again.returncode == 0 and "replayed" not in again.stdout  # nothing replayed twice
    assert pg_rows(pg_dsn, "SELECT count(*) FROM products") == [(1200 + 1 - 1 + 1,)]


def test_backup_promote_rollback_on_sqld_and_tursodb(pg_dsn: str, edge_server: SqldServer | TursoServer,
                                                    run_cli: Cli, tmp_path: Path) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    _full_cycle(pg_dsn, edge_server.url, run_cli, tmp_path, env, None)


@pytest.mark.slow
def test_backup_promote_rollback_on_d1(pg_dsn: str, d1: LocalD1, run_cli: Cli, tmp_path: Path) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging"), "PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    _full_cycle(pg_dsn, d1.url, run_cli, tmp_path, env, d1.token)
    # D1 itself (its SQLite file, not the Worker) holds the changelog with the three replayed writes
    assert d1.read("SELECT op FROM _pg2edge_changelog ORDER BY id") == [("I",), ("U",), ("D",)]


def test_cutover_commands_take_the_config_files_token(pg_dsn: str, sqld_jwt: tuple[SqldServer, JwtKey],
                                                      run_cli: Cli, tmp_path: Path) -> None:
    server, key = sqld_jwt
    token = key.token()
    cfg = tmp_path / "conf" / "pg2edge.toml"  # not ./pg2edge.toml, which every command would read
    cfg.parent.mkdir()
    cfg.write_text(f'[target]\npath = "{server.url}"\nauth_token = "{token}"\n')
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    run_sql(pg_dsn, "CREATE TABLE products (id int PRIMARY KEY, name text)",
            "INSERT INTO products SELECT g, 'p' || g FROM generate_series(1, 10) g")
    assert run_cli("sync", "--source", pg_dsn, "--config", str(cfg), "--until-caught-up", env=env).returncode == 0
    for args in (["check", "--format", "json"], ["freeze"], ["drain", "--timeout", "30"], ["unfreeze"]):
        res = run_cli("cutover", *args, "--source", pg_dsn, "--config", str(cfg), env=env)
        assert res.returncode in (0, 1) and "401" not in res.stdout + res.stderr, res.stdout + res.stderr
        assert token not in res.stdout + res.stderr
    res = run_cli("cutover", "backup", "--config", str(cfg), "--output", str(tmp_path / "b.db"), env=env)
    assert res.returncode == 0 and _backup_rows(tmp_path / "b.db")[0] == 10, res.stderr
    # the same command without the token: one line naming the URL, never a token
    res = run_cli("cutover", "backup", "--target", server.url, "--output", str(tmp_path / "c.db"), env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and server.url in lines[0], res.stderr
    assert not (tmp_path / "c.db").exists() and not (tmp_path / "c.db.partial").exists()


@pytest.mark.slow
def test_promote_stops_a_running_sync_into_d1_and_names_a_daemon_on_another_host(
        pg_dsn: str, d1: LocalD1, run_cli: Cli, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from pg2edge.pipeline import state
    from pg2edge.pipeline.status import open_writable

    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging"), "PG2EDGE_TARGET_AUTH_TOKEN": d1.token}
    target = parse_target(d1.url, token=d1.token)
    run_sql(pg_dsn, "CREATE TABLE products (id int PRIMARY KEY, name text)", "INSERT INTO products VALUES (1, 'a')")
    assert run_cli("sync", "--source", pg_dsn, "--target", d1.url, "--until-caught-up", env=env).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", pg_dsn, "--target", d1.url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        deadline = time.monotonic() + 60
        while True:  # the D1 daemon records its pid and host in D1 once it streams
            db = open_writable(target)
            rec = state.read_record(db, "daemon", "pid")
            db.close()
            if rec and rec.get("pid") == proc.pid:
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        # a daemon recorded on another host is named, not signalled
        db = open_writable(target)
        with db:
            state.write_record(db, "daemon", "pid", {**rec, "host": "elsewhere.example"})
        db.close()
        res = run_cli("cutover", "promote", "--source", pg_dsn, "--target", d1.url, env=env)
        assert res.returncode == 2 and "runs on host elsewhere.example" in res.stderr, res.stderr
        assert proc.poll() is None
        db = open_writable(target)
        with db:
            state.write_record(db, "daemon", "pid", rec)
        db.close()
        res = run_cli("cutover", "promote", "--source", pg_dsn, "--target", d1.url, env=env)
        assert res.returncode == 0 and f"stopped the sync daemon (pid {proc.pid})" in res.stdout, res.stdout + res.stderr
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert d1.read("SELECT json_extract(value, '$.pid') FROM _pg2edge_state WHERE scope = 'daemon'") == [(None,)]
    assert d1.read("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE '_pg2edge_log_%'") == [(3,)]
