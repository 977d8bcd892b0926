"""The direct snapshot of a remote target (no staging file) into real sqld and tursodb: exact, resumable per
table after a SIGKILL mid-table, and continued exactly once by the change stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pg2edge import sample
from pg2edge.errors import ConfigError
from pg2edge.pipeline import state
from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.remote import HranaClient, RemoteConnection, RemoteError, parse_target
from pg2edge.pipeline.sinks.libsql import snapshot_into_remote
from pg2edge.validators import validate
from tests.conftest import _cli_env
from tests.support.edge import SqldServer, TursoServer
from tests.support.rows import run_sql


def _quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))


def _assert_equal(dsn: str, url: str) -> None:
    report = validate(dsn, parse_target(url, env={}), mode="full", timeout=60)
    bad = {t.table: [m.key for m in t.mismatches][:5] for t in report.tables if t.mismatches}
    assert report.clean, (bad, [(t.table, t.source_rows, t.replica_rows) for t in report.tables])


def test_direct_snapshot_of_the_sample_shop_then_changes(pg_dsn: str, edge_server: SqldServer | TursoServer,
                                                         tmp_path: Path) -> None:
    sample.install(pg_dsn)
    url = edge_server.url
    seen: dict[str, int] = {}
    lines: list[str] = []
    report = run_sync(dsn=pg_dsn, target=url, until_caught_up=True, say=lines.append, snapshot_path="direct",
                      on_progress=lambda spec, n: seen.__setitem__(spec.label, seen.get(spec.label, 0) + n))
    assert report.snapshot is not None and report.snapshot.rows > 0
    assert any("direct" in line for line in lines) and not any(line.startswith("uploaded") for line in lines)
    assert seen == {t: n for t, n in report.snapshot.tables.items() if n}  # progress for every row sent
    assert not (tmp_path / "staging").exists() or not list((tmp_path / "staging").glob("*.db"))
    _assert_equal(pg_dsn, url)
    conn = RemoteConnection(parse_target(url, env={}))
    try:
        tables = state.read_tables(conn)  # type: ignore[arg-type]
        assert all(t.snapshot is state.SnapshotStatus.DONE for t in tables.values())
        assert {name: t.rows_copied for name, t in tables.items() if name in report.snapshot.tables} == \
            report.snapshot.tables
        run = state.read_run(conn)  # type: ignore[arg-type]
        assert run is not None and run.status is state.RunStatus.DONE
    finally:
        conn.close()
    table = sorted(report.snapshot.tables)[0].split(".")[1]
    run_sql(pg_dsn, f'DELETE FROM "{table}" WHERE ctid IN (SELECT ctid FROM "{table}" LIMIT 3)')
    again = run_sync(dsn=pg_dsn, target=url, until_caught_up=True, say=_quiet, snapshot_path="direct")
    assert again.snapshot is not None and again.snapshot.already_complete and again.rows == 3
    _assert_equal(pg_dsn, url)


def _start_sync(dsn: str, url: str, cwd: Path, grace: float | None = None) -> subprocess.Popen[str]:
    env = _cli_env({"PG2EDGE_STAGING_DIR": str(cwd / "staging")})
    if grace is not None:  # how long the keeper waits for a rerun after a SIGKILL (3 s by default)
        env["PG2EDGE_KEEPER_CRASH_GRACE"] = str(grace)
    return subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--target", url,
                             "--snapshot-path", "direct", "--jobs", "1", "--until-caught-up", "--heartbeat", "0.2"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _progress(client: HranaClient) -> dict[str, dict[str, object]]:
    try:
        rows = client.execute("SELECT name, value FROM \"_pg2edge_state\" WHERE scope = 'table'").rows
    except RemoteError:
        return {}
    return {name: json.loads(value) for name, value in rows}


def test_sigkill_mid_table_resumes_and_streams_exactly_once(pg_dsn: str, edge_server: SqldServer | TursoServer,
                                                            tmp_path: Path) -> None:
    url = edge_server.url
    run_sql(pg_dsn,
            "CREATE TABLE small (id int PRIMARY KEY, v text)",
            "INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 500) g",
            "CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric(12,2))",
            "INSERT INTO big SELECT g, repeat('x', 40) || g, g / 7.0 FROM generate_series(1, 150000) g")
    proc = _start_sync(pg_dsn, url, tmp_path, grace=60)  # a loaded test machine may start the rerun slowly
    client = HranaClient(parse_target(url, env={}))
    try:
        deadline = time.monotonic() + 120
        while True:  # kill once the big table (copied first: biggest first) is part-way, not done
            big = _progress(client).get("public.big", {})
            if 0 < int(big.get("rows_copied") or 0) and big.get("snapshot") == "copying":
                break
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the snapshot never got part-way"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        part = _progress(client)["public.big"]
        assert part["snapshot"] == "copying" and 0 < int(part["rows_copied"]) < 150000  # type: ignore[call-overload]
        remote_rows = client.execute('SELECT count(*) FROM "big"').rows[0][0]
        assert remote_rows == part["rows_copied"]  # the progress is exactly what landed (same batch)
        # changes committed while the snapshot is down: after the slot's consistent point, so CDC brings them
        run_sql(pg_dsn, "INSERT INTO big VALUES (200001, 'after', 1)", "UPDATE small SET v = 'changed' WHERE id = 7",
                "DELETE FROM big WHERE id = 5")
        rerun = _start_sync(pg_dsn, url, tmp_path)  # within the keeper's crash grace: the snapshot is adopted
        out, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, out
        assert "resuming snapshot" in out, out
        assert client.execute('SELECT count(*) FROM "big"').rows == [(150000,)]  # -1 deleted, +1 inserted
        assert client.execute('SELECT v FROM "small" WHERE id = 7').rows == [("changed",)]
        assert client.execute('SELECT count(*) FROM "big" WHERE id IN (5, 200001)').rows == [(1,)]
        _assert_equal(pg_dsn, url)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


def test_a_direct_run_in_progress_is_not_mixed_with_the_staged_path(pg_dsn: str, sqld: SqldServer,
                                                                   tmp_path: Path) -> None:
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t SELECT generate_series(1, 10)")
    target = parse_target(sqld.url, env={})
    with HranaClient(target) as client:
        client.batch([('CREATE TABLE "_pg2edge_state" (scope TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, '
                       'updated_at TEXT NOT NULL, PRIMARY KEY (scope, name))', ()),
                      ("INSERT INTO \"_pg2edge_state\" VALUES ('snapshot', 'run', '{\"status\": \"copying\"}', '')",
                       ())])
        with pytest.raises(ConfigError, match="direct snapshot is in progress"):
            snapshot_into_remote(dsn=pg_dsn, target=target, client=client, say=_quiet, path="staged")
        with pytest.raises(ConfigError, match="'sideways'"):
            snapshot_into_remote(dsn=pg_dsn, target=target, client=client, say=_quiet, path="sideways")


def test_direct_refuses_a_foreign_database(pg_dsn: str, sqld: SqldServer) -> None:
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    target = parse_target(sqld.url, env={})
    with HranaClient(target) as client:
        client.execute('CREATE TABLE "customers_of_someone_else" ("id" INTEGER PRIMARY KEY)')
        with pytest.raises(RemoteError, match="not a pg2edge replica"):
            snapshot_into_remote(dsn=pg_dsn, target=target, client=client, say=_quiet, path="direct")
        assert client.execute("SELECT count(*) FROM sqlite_schema WHERE name = '_pg2edge_state'").rows == [(0,)]
    with psycopg_conn(pg_dsn) as conn:  # nothing changed on the source either
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)


def psycopg_conn(dsn: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def test_a_bad_snapshot_path_is_one_line_and_exit_2(run_cli, sqld: SqldServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "pg2edge.toml").write_text(f'[target]\npath = "{sqld.url}"\nsnapshot_path = "sideways"\n')
    result = run_cli("sync", "--config", "pg2edge.toml", "--source", "postgresql://app@127.0.0.1:1/shop")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "snapshot_path" in lines[0] and "sideways" in lines[0], result.stderr
    with HranaClient(parse_target(sqld.url, env={})) as client:  # nothing written to the target
        assert client.execute("SELECT count(*) FROM sqlite_schema").rows == [(0,)]


def test_sigterm_mid_table_holds_the_snapshot_for_a_later_rerun(pg_dsn: str, sqld: SqldServer,
                                                                tmp_path: Path) -> None:
    url = sqld.url
    run_sql(pg_dsn, "CREATE TABLE big (id bigint PRIMARY KEY, v text)",
            "INSERT INTO big SELECT g, repeat('y', 60) || g FROM generate_series(1, 150000) g")
    proc = _start_sync(pg_dsn, url, tmp_path)
    client = HranaClient(parse_target(url, env={}))
    try:
        deadline = time.monotonic() + 120
        while int(_progress(client).get("public.big", {}).get("rows_copied") or 0) == 0:  # type: ignore[call-overload]
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the snapshot never got part-way"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # a stop in order: the run is marked held on the remote
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "a rerun resumes it" in out, out
        run = RemoteConnection(parse_target(url, env={}))
        try:
            held = state.read_run(run)  # type: ignore[arg-type]
        finally:
            run.close()
        assert held is not None and held.held and held.status is state.RunStatus.COPYING
        time.sleep(5)  # past the keeper's 3 s crash grace: only the held mark keeps the snapshot
        rerun = _start_sync(pg_dsn, url, tmp_path)
        out, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0 and "resuming snapshot" in out, out
        assert client.execute('SELECT count(*) FROM "big"').rows == [(150000,)]
        _assert_equal(pg_dsn, url)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()
