"""status, wait and validate against a remote replica on a real sqld (and tursodb), over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from pg2edge import sample
from pg2edge.pipeline import state
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.pipeline.remote.upload import upload_replica
from pg2edge.pipeline.sources.snapshot import run_snapshot
from tests.support.edge import JwtKey, SqldServer, TursoServer

Cli = Callable[..., CompletedProcess[str]]


def _quiet(_: str) -> None:
    pass


def _seed(dsn: str, tmp_path: Path, url: str, token: str | None = None) -> state.Position:
    sample.install(dsn)
    staging = tmp_path / "staging.db"
    run_snapshot(dsn=dsn, target=staging, jobs=1, say=_quiet)
    with HranaClient(parse_target(url, env={}, token=token)) as client:
        upload_replica(staging, client, say=_quiet)
    import apsw

    db = apsw.Connection(str(staging))
    try:
        pos = state.read_position(db)
    finally:
        db.close()
    assert pos is not None
    return pos


def test_status_wait_validate_over_http(pg_dsn: str, tmp_path: Path, edge_server: SqldServer | TursoServer,
                                        run_cli: Cli) -> None:
    pos = _seed(pg_dsn, tmp_path, edge_server.url)
    url = edge_server.url
    res = run_cli("status", "--target", url, "--source", pg_dsn, "--format", "json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["target"] == url and st["applied_lsn"] == format_lsn(pos.end_lsn) and st["snapshot"] == "done"
    assert st["slot"] and st["lag_bytes"] is not None and st["dlq"] == 0
    res = run_cli("wait", "--target", url, "--lsn", format_lsn(pos.end_lsn), "--timeout", "5")
    assert res.returncode == 0, res.stderr
    res = run_cli("wait", "--target", url, "--lsn", format_lsn(pos.end_lsn + 10**9), "--timeout", "0.3")
    assert res.returncode == 1 and url in res.stderr
    for mode in ("count", "sample", "full"):
        res = run_cli("validate", "--source", pg_dsn, "--target", url, "--mode", mode, "--format", "json",
                      "--timeout", "20")
        assert res.returncode == 0, (mode, res.stdout, res.stderr)
        assert json.loads(res.stdout)["clean"] is True
    # a row changed behind pg2edge's back on the remote is found, by key, over HTTP
    with HranaClient(parse_target(url, env={})) as client:
        client.execute('UPDATE "products" SET "name" = ? WHERE "id" = (SELECT min("id") FROM "products")', ("tampered",))
        client.execute('DELETE FROM "audit_logs" WHERE "id" = (SELECT max("id") FROM "audit_logs")')
    res = run_cli("validate", "--source", pg_dsn, "--target", url, "--mode", "full", "--format", "json",
                  "--timeout", "20")
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    bad = {t["table"]: t for t in report["tables"] if t["mismatches"]}
    assert set(bad) == {"public.products", "public.audit_logs"}
    with HranaClient(parse_target(url, env={})) as client:
        last = client.execute("SELECT value FROM _pg2edge_state WHERE scope = 'validation' AND name = 'last'").rows
    assert json.loads(last[0][0])["clean"] is False  # the outcome is recorded inside the remote
    res = run_cli("validate", "--source", pg_dsn, "--target", url, "--mode", "full", "--repair", "--format", "json",
                  "--timeout", "20")
    assert json.loads(res.stdout)["repaired"] is True, res.stdout + res.stderr
    res = run_cli("validate", "--source", pg_dsn, "--target", url, "--mode", "full", "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr  # repaired over HTTP: clean again


def test_remote_commands_refuse_bad_targets_in_one_line(pg_dsn: str, tmp_path: Path, sqld_jwt: tuple[SqldServer, JwtKey],
                                                         sqld: SqldServer, run_cli: Cli) -> None:
    server, key = sqld_jwt
    token = key.token()
    _seed(pg_dsn, tmp_path, server.url, token=token)
    ok = run_cli("status", "--target", server.url, "--format", "json", env={"PG2EDGE_TARGET_AUTH_TOKEN": token})
    assert ok.returncode == 0, ok.stderr
    turso_env = run_cli("status", "--target", server.url, "--format", "json", env={"TURSO_AUTH_TOKEN": token})
    assert turso_env.returncode == 0, turso_env.stderr
    wrong = JwtKey.create(tmp_path).token()
    from pg2edge.pgcluster import free_port

    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (("status", "--target", server.url), {"PG2EDGE_TARGET_AUTH_TOKEN": wrong}, ["authentication refused", server.url]),
        (("status", "--target", server.url), {}, ["authentication refused", server.url]),
        (("status", "--target", sqld.url), {}, ["not a pg2edge replica", sqld.url]),  # an empty libSQL database
        (("wait", "--target", "ftp://x", "--lsn", "0/1"), {}, ["not a remote URL"]),
        (("status", "--target", "libsql://h.turso.io?authToken=" + token), {}, ["carries a credential"]),
    ]
    for args, env, words in cases:
        res = run_cli(*args, env={**env, "PG2EDGE_REMOTE_RETRY_FOR": "1"})
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, (args, res.stderr)
        assert all(w in lines[0] for w in words), (args, lines)
        assert token not in res.stderr and wrong not in res.stderr
    res = run_cli("status", "--target", down, env={"PG2EDGE_REMOTE_RETRY_FOR": "1"})
    assert res.returncode == 2 and "refused" in res.stderr and down in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


