"""Bad input of the database-per-tenant split into libSQL: one line, exit 2, nothing half-applied.

Real PostgreSQL and real sqld servers (namespaces on or off, admin key or not).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from pg2edge.pipeline import state
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.tenants.ids import tenant_label
from tests.support.edge import SqldServer
from tests.support.rows import pg_rows, run_sql

SCHEMA = ("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",)
# two ids with the same sanitized form ("a-b") and the same 8-hex-digit hash suffix (found by search)
COLLIDING = ("a*+ #b", "a+@+^b")


def _toml(server: SqldServer, tmp_path: Path) -> Path:
    cfg = {"pattern": server.tenant_pattern(), "provision": "sqld-admin", "admin_url": server.admin_url,
           "shared_path": str(tmp_path / "hub" / "_shared.db")}
    path = tmp_path / "pg2edge.toml"
    path.write_text("[tenants]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
    return path


def _sync(run_cli, dsn: str, server: SqldServer, tmp_path: Path, **env: str):
    return run_cli("sync", "--source", dsn, "--config", str(_toml(server, tmp_path)), "--tenant-pattern",
                   server.tenant_pattern(), "--until-caught-up",
                   env={"PG2EDGE_STAGING_DIR": str(tmp_path / "staging"), **env})


def _one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr)
    return lines[0]


def _slots(dsn: str) -> int:
    return pg_rows(dsn, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")[0][0]


def _namespaces(server: SqldServer) -> set[str]:
    folder = server.folder / "data.sqld" / "dbs"
    return {p.name for p in folder.iterdir()} - {"default"} if folder.is_dir() else set()


def test_provisioning_refused_with_401_names_the_admin_api(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, *SCHEMA, "INSERT INTO notes VALUES ('acme', 1, 'x')")
    server = SqldServer(tmp_path / "sqld", namespaces=True, admin_key="admin-secret-1")
    server.start()
    try:
        line = _one_line(_sync(run_cli, pg_dsn, server, tmp_path))
        assert server.admin_url in line and "401" in line and "LIBSQL_ADMIN_AUTH_KEY" in line
        assert "admin-secret-1" not in line
        assert _slots(pg_dsn) == 0 and _namespaces(server) == set()  # nothing started on either side
        done = _sync(run_cli, pg_dsn, server, tmp_path, LIBSQL_ADMIN_AUTH_KEY="admin-secret-1")
        assert done.returncode == 0, done.stderr
        assert _namespaces(server) == {"acme"}
    finally:
        server.stop()


def test_sqld_without_namespaces_is_refused(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, *SCHEMA, "INSERT INTO notes VALUES ('acme', 1, 'x')")
    server = SqldServer(tmp_path / "sqld", namespaces=False, admin=True)
    server.start()
    try:
        line = _one_line(_sync(run_cli, pg_dsn, server, tmp_path))
        assert "--enable-namespaces" in line and str(server.port) in line
        assert _slots(pg_dsn) == 0
    finally:
        server.stop()


def test_ids_colliding_after_mapping_are_named_and_nothing_is_created(pg_dsn: str, sqld_namespaces: SqldServer,
                                                                       tmp_path: Path, run_cli) -> None:
    assert tenant_label(COLLIDING[0]) == tenant_label(COLLIDING[1])
    run_sql(pg_dsn, *SCHEMA, "INSERT INTO notes VALUES ('plain', 1, 'x')")
    run_sql(pg_dsn, "INSERT INTO notes VALUES (%s, 1, 'y'), (%s, 1, 'z')", params=COLLIDING)
    line = _one_line(_sync(run_cli, pg_dsn, sqld_namespaces, tmp_path))
    assert repr(COLLIDING[0]) in line and repr(COLLIDING[1]) in line and tenant_label(COLLIDING[0]) in line
    assert _namespaces(sqld_namespaces) == set()  # refused before any tenant database was created


def test_a_database_dropped_under_the_daemon_is_named_and_the_batch_not_acknowledged(
        pg_dsn: str, sqld_namespaces: SqldServer, tmp_path: Path, run_cli) -> None:
    server = sqld_namespaces
    run_sql(pg_dsn, *SCHEMA, "INSERT INTO notes VALUES ('acme', 1, 'x'), ('globex', 1, 'y')")
    assert _sync(run_cli, pg_dsn, server, tmp_path).returncode == 0
    hub_path = tmp_path / "hub" / "_shared.db"
    hub = open_replica(hub_path)
    before = state.read_position(hub)
    hub.close()
    assert httpx.delete(f"{server.admin_url}/v1/namespaces/acme").status_code == 200  # behind pg2edge's back
    run_sql(pg_dsn, "BEGIN; INSERT INTO notes VALUES ('acme', 2, 'lost?'); "
            "INSERT INTO notes VALUES ('globex', 2, 'kept'); COMMIT")
    line = _one_line(_sync(run_cli, pg_dsn, server, tmp_path, PG2EDGE_REMOTE_RETRY_FOR="2"))
    assert "'acme'" in line and "does not exist any more" in line and "tenant delete" in line
    hub = open_replica(hub_path)
    after = state.read_position(hub)
    hub.close()
    assert after == before  # the shared position did not move past the failed batch
    flushed = pg_rows(pg_dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                      "WHERE database = current_database()")[0][0]
    assert before is not None and parse_lsn(flushed) <= before.end_lsn


def test_two_databases_dropped_among_twenty_applied_in_parallel_stop_the_batch(
        pg_dsn: str, sqld_namespaces: SqldServer, tmp_path: Path, run_cli) -> None:
    """The touched tenant databases are applied concurrently ([tenants] max_connections at once, 8 by
    default); two failing ones stop the batch with one line naming the first (in tenant order), the hub
    does not advance, and the tenants that committed skip the batch when it is streamed again."""
    server = sqld_namespaces
    tenants = [f"t{i:02d}" for i in range(20)]
    run_sql(pg_dsn, *SCHEMA,
            "INSERT INTO notes SELECT 't' || lpad(g::text, 2, '0'), 1, 'x' FROM generate_series(0, 19) g")
    assert _sync(run_cli, pg_dsn, server, tmp_path).returncode == 0
    hub_path = tmp_path / "hub" / "_shared.db"
    hub = open_replica(hub_path)
    before = state.read_position(hub)
    hub.close()
    for gone in ("t07", "t13"):
        assert httpx.delete(f"{server.admin_url}/v1/namespaces/{gone}").status_code == 200
    run_sql(pg_dsn, "INSERT INTO notes SELECT 't' || lpad(g::text, 2, '0'), 2, 'y' FROM generate_series(0, 19) g")
    line = _one_line(_sync(run_cli, pg_dsn, server, tmp_path, PG2EDGE_REMOTE_RETRY_FOR="2"))
    assert "'t07'" in line and "'t13'" not in line and "does not exist any more" in line
    hub = open_replica(hub_path)
    assert state.read_position(hub) == before
    hub.close()
    # every database still there committed its share (rows + its position) or holds nothing of it
    for tenant in tenants:
        if tenant in ("t07", "t13"):
            continue
        url = server.tenant_pattern().replace("{tenant}", tenant_label(tenant))
        with HranaClient(parse_target(url, env={})) as client:
            (count,), = client.execute('SELECT count(*) FROM "notes"').rows
        assert count in (1, 2), (tenant, count)
