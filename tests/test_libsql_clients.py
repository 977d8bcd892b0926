"""The seed's application path: pg2edge feeds sqld/tursodb, the apps' own clients read what it applied.

* @libsql/client 0.18 (npm) as an embedded replica of sqld: createClient({url: 'file:…', syncUrl}), sync();
* read-your-writes: commit on PostgreSQL, take pg_current_wal_lsn(), `pg2edge wait` on the remote, sync, read;
* Turso Sync: pyturso's turso.sync against tursodb;
* the documented pitfall: a long-lived embedded replica that pulled ALTER TABLE ADD COLUMN keeps the old
  column list for SELECT * (named columns, or a new client, see the new column).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from pg2edge.pipeline.daemon import run_sync
from tests.conftest import _cli_env
from tests.support.edge import NodeWatcher, SqldServer, TursoServer, node_read_replica
from tests.support.rows import pg_rows, run_sql

Cli = Callable[..., CompletedProcess[str]]


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """Start `pg2edge sync --source DSN --target URL` as a real background process; SIGTERM at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(dsn: str, url: str) -> subprocess.Popen[str]:
        env = _cli_env({"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")})
        proc = subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--target", url,
                                 "--heartbeat", "0.2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err


def _lsn(dsn: str) -> str:
    return str(pg_rows(dsn, "SELECT pg_current_wal_lsn()::text")[0][0])


def test_embedded_replica_reads_your_write_after_pg2edge_wait(pg_dsn: str, sqld: SqldServer, run_cli: Cli,
                                                              daemon: Callable[..., subprocess.Popen[str]],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    run_sql(pg_dsn, "CREATE TABLE posts (id int PRIMARY KEY, title text, views bigint)",
            "INSERT INTO posts VALUES (1, 'hello', 10)")
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    replica = tmp_path / "app-replica.db"
    first = node_read_replica(replica, sqld.url, 'SELECT "id", "title" FROM "posts" ORDER BY "id"')
    assert first["results"][0]["rows"] == [{"id": 1, "title": "hello"}]  # type: ignore[index]
    daemon(pg_dsn, sqld.url)
    for n in range(2, 5):
        run_sql(pg_dsn, f"INSERT INTO posts VALUES ({n}, 'written to PostgreSQL {n}', {n * 100})")
        token = _lsn(pg_dsn)  # the read-your-writes token: the LSN after the commit
        res = run_cli("wait", "--target", sqld.url, "--lsn", token, "--timeout", "30")
        assert res.returncode == 0, res.stderr
        got = node_read_replica(replica, sqld.url, f'SELECT "title", "views" FROM "posts" WHERE "id" = {n}')
        assert got["results"][0]["rows"] == [{"title": f"written to PostgreSQL {n}", "views": n * 100}]  # type: ignore[index]


def test_turso_sync_client_reads_what_pg2edge_applied(pg_dsn: str, tursodb: TursoServer, run_cli: Cli,
                                                       daemon: Callable[..., subprocess.Popen[str]],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import turso.sync

    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    run_sql(pg_dsn, "CREATE TABLE notes (id int PRIMARY KEY, body text)", "INSERT INTO notes VALUES (1, 'one')")
    run_sync(dsn=pg_dsn, target=tursodb.url, until_caught_up=True, say=_quiet)
    conn = turso.sync.connect(str(tmp_path / "local.db"), remote_url=tursodb.url)
    try:
        assert conn.execute('SELECT "id", "body" FROM "notes"').fetchall() == [(1, "one")]
        daemon(pg_dsn, tursodb.url)
        run_sql(pg_dsn, "INSERT INTO notes VALUES (2, 'two')", "UPDATE notes SET body = 'uno' WHERE id = 1")
        token = _lsn(pg_dsn)
        res = run_cli("wait", "--target", tursodb.url, "--lsn", token, "--timeout", "30")
        assert res.returncode == 0, res.stderr
        conn.pull()
        assert conn.execute('SELECT "id", "body" FROM "notes" ORDER BY "id"').fetchall() == [(1, "uno"), (2, "two")]
    finally:
        conn.close()


def test_long_lived_replica_keeps_old_columns_for_select_star(pg_dsn: str, sqld: SqldServer, run_cli: Cli,
                                                               daemon: Callable[..., subprocess.Popen[str]],
                                                               tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured, documented in the README (Turso section): what a Next.js app sees after ADD COLUMN."""
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'a')")
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    watcher = NodeWatcher(tmp_path / "long-lived.db", sqld.url, 'SELECT * FROM "items" ORDER BY "id"',
                          'SELECT "id", "name", "price" FROM "items" ORDER BY "id"', reads=3)
    try:
        assert watcher.first["results"][0]["columns"] == ["id", "name"]  # type: ignore[index]
        daemon(pg_dsn, sqld.url)
        run_sql(pg_dsn, "ALTER TABLE items ADD COLUMN price numeric(10,2)", "INSERT INTO items VALUES (2, 'b', 9.99)")
        res = run_cli("wait", "--target", sqld.url, "--lsn", _lsn(pg_dsn), "--timeout", "30")
        assert res.returncode == 0, res.stderr
        after = watcher.read()
        star, named = after["results"]  # type: ignore[misc]
        assert star["columns"] == ["id", "name"]  # the pitfall: SELECT * still has the old column list
        assert [r["id"] for r in star["rows"]] == [1, 2]  # ... though the new row is there
        assert named["columns"] == ["id", "name", "price"] and named["rows"][1]["price"] == "9.99"
    finally:
        watcher.close()
    fresh = node_read_replica(tmp_path / "long-lived.db", sqld.url, 'SELECT * FROM "items" ORDER BY "id"')
    assert fresh["results"][0]["columns"] == ["id", "name", "price"]  # type: ignore[index]  (a new client)


@pytest.mark.slow
def test_demo_reaches_the_edge(run_cli: Cli, tmp_path: Path) -> None:
    res = run_cli("demo", "--edge", "--workdir", str(tmp_path / "demo"), "--scale", "0.1", timeout=600,
                  env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "sqld (libSQL server) serves http://127.0.0.1:" in res.stdout
    assert "An app reading" in res.stdout and "@libsql/client embedded replica" in res.stdout
    seen = next(line for line in res.stdout.splitlines() if "An app reading" in line).split(" sees: ")[1]
    read = next(line for line in res.stdout.splitlines() if "embedded replica" in line).split(" read: ")[1]
    assert seen.startswith("{") and seen == read  # the seed's client read the same row pg2edge put there
