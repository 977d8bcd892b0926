"""One libSQL database per tenant on a real sqld with namespaces (issue 18).

Real PostgreSQL, a real sqld 0.24.32 started with --enable-namespaces --admin-listen-addr, the real
@libsql/client embedded replicas. Tenant databases are namespaces reached as http://NAME.localhost:PORT.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import psycopg
import pytest

from pg2edge.config import TenantsConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.pipeline.tenants.daemon import run_tenant_sync
from pg2edge.pipeline.tenants.ids import tenant_label
from pg2edge.pipeline.tenants.remote import registry_of
from tests.conftest import _cli_env
from tests.support.edge import SqldServer, node_read_replica
from tests.support.rows import pg_rows, run_sql

SCHEMA = ("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",
          "CREATE TABLE plans (id int PRIMARY KEY, name text)",
          "INSERT INTO plans VALUES (1, 'free'), (2, 'pro')")


def _quiet(_: str) -> None:
    pass


def _config(server: SqldServer, tmp_path: Path, **kw: object) -> TenantsConfig:
    return TenantsConfig(pattern=server.tenant_pattern(), provision="sqld-admin", admin_url=server.admin_url,
                         shared_path=str(tmp_path / "hub" / "_shared.db"), **kw)  # type: ignore[arg-type]


def _toml(server: SqldServer, tmp_path: Path, **kw: object) -> Path:
    cfg = {"pattern": server.tenant_pattern(), "provision": "sqld-admin", "admin_url": server.admin_url,
           "shared_path": str(tmp_path / "hub" / "_shared.db"), **kw}
    path = tmp_path / "pg2edge.toml"
    path.write_text("[tenants]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()))
    return path


def _remote_rows(server: SqldServer, tenant: str, sql: str) -> list[tuple]:
    url = server.tenant_pattern().replace("{tenant}", tenant_label(tenant))
    with HranaClient(parse_target(url, env={})) as client:
        return client.execute(sql).rows


def _namespace_exists(server: SqldServer, name: str) -> bool:
    import httpx

    return httpx.get(f"{server.admin_url}/v1/namespaces/{name}/config").status_code == 200


def _assert_tenants_equal_source(dsn: str, server: SqldServer, cfg: TenantsConfig) -> None:
    """Every tenant database holds exactly its slice of notes (no other tenant's rows) and every plan."""
    tenants = [r[0] for r in pg_rows(dsn, "SELECT DISTINCT tenant_id FROM notes ORDER BY 1")]
    recorded = {r["tenant"] for r in registry_of(cfg.shared_path).values() if r["status"] == "created"}
    assert set(tenants) <= recorded
    plans = pg_rows(dsn, "SELECT id, name FROM plans ORDER BY id")
    for tenant in sorted(recorded):
        want = pg_rows(dsn, "SELECT tenant_id, id, body FROM notes WHERE tenant_id = %s ORDER BY id", (tenant,))
        got = _remote_rows(server, tenant, 'SELECT "tenant_id", "id", "body" FROM "notes" ORDER BY "id"')
        assert got == want, tenant
        assert _remote_rows(server, tenant, 'SELECT "id", "name" FROM "plans" ORDER BY "id"') == plans, tenant


def test_fifty_tenant_databases_snapshot_stream_lifecycle(pg_dsn: str, sqld_namespaces: SqldServer, tmp_path: Path,
                                                           run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    server = sqld_namespaces
    run_sql(pg_dsn, *SCHEMA,
            "INSERT INTO notes SELECT 't' || (g % 50), g, 'note ' || g FROM generate_series(1, 1000) g")
    cfg = _config(server, tmp_path, max_open=8, max_connections=3)
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.snapshot.tenants == 50
    assert all(_namespace_exists(server, f"t{i}") for i in (0, 17, 49))
    _assert_tenants_equal_source(pg_dsn, server, cfg)

    # streaming: updates, deletes, a tenant move, a shared change in the same transaction, a new tenant
    # whose id is not a DNS label (its first row creates its database)
    run_sql(pg_dsn,
            "INSERT INTO notes SELECT 't' || (g % 50), g, 'new ' || g FROM generate_series(1001, 1200) g",
            "UPDATE notes SET body = body || ' edited' WHERE id % 7 = 0",
            "DELETE FROM notes WHERE id % 11 = 0",
            "UPDATE notes SET tenant_id = 't3' WHERE tenant_id = 't4' AND id = 4",
            "BEGIN; INSERT INTO plans VALUES (3, 'team'); INSERT INTO notes VALUES ('t1', 5000, 'x'); COMMIT",
            "INSERT INTO notes VALUES ('Brand New/Co', 1, 'first note of a new tenant')")
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up" and report.tenants_created == 1 and report.peak_open_files <= 8
    label = tenant_label("Brand New/Co")
    assert label.startswith("brand-new-co-x") and _namespace_exists(server, label)
    _assert_tenants_equal_source(pg_dsn, server, cfg)

    # tenant list shows the original ids; delete asks (refused without a terminal), --yes drops it
    config = _toml(server, tmp_path)
    listed = run_cli("tenant", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "Brand New/Co\thttp://" in listed.stdout and "51 tenant database(s) (0 deleted)" in listed.stdout
    refused = run_cli("tenant", "delete", "Brand New/Co", "--config", str(config))
    assert refused.returncode == 2 and "--yes" in refused.stderr and _namespace_exists(server, label)
    dropped = run_cli("tenant", "delete", "Brand New/Co", "--config", str(config), "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert not _namespace_exists(server, label)

    # later changes of the deleted tenant are named and not applied; the others go on
    run_sql(pg_dsn, "INSERT INTO notes VALUES ('Brand New/Co', 2, 'after delete'), ('t5', 9000, 'still here')")
    done = run_cli("sync", "--source", pg_dsn, "--config", str(config), "--tenant-pattern", server.tenant_pattern(),
                   "--until-caught-up",
                   env={"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")})
    assert done.returncode == 0, done.stderr
    assert "tenant 'Brand New/Co' was deleted: 1 later change(s) for it not applied" in done.stdout
    assert not _namespace_exists(server, label)
    assert _remote_rows(server, "t5", 'SELECT "body" FROM "notes" WHERE "id" = 9000') == [("still here",)]


def test_embedded_replicas_per_tenant_with_libsql_client(pg_dsn: str, sqld_namespaces: SqldServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The article's app: createClient({url: 'file:...', syncUrl: per-tenant URL}), sync(), read."""
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    server = sqld_namespaces
    run_sql(pg_dsn, *SCHEMA, "INSERT INTO notes SELECT 'acme', g, 'acme ' || g FROM generate_series(1, 30) g",
            "INSERT INTO notes SELECT 'Globex Inc', g, 'globex ' || g FROM generate_series(1, 20) g")
    cfg = _config(server, tmp_path)
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, "INSERT INTO notes VALUES ('acme', 100, 'streamed'), ('initech', 1, 'new tenant')")
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    for tenant in ("acme", "Globex Inc", "initech"):
        url = server.tenant_pattern().replace("{tenant}", tenant_label(tenant))
        out = node_read_replica(tmp_path / "app" / f"{tenant_label(tenant)}.db", url,
                                "SELECT tenant_id, count(*) AS n, max(body) AS top FROM notes GROUP BY tenant_id",
                                "SELECT count(*) AS n FROM plans", loopback_names=[url])
        want = pg_rows(pg_dsn, "SELECT tenant_id, count(*), max(body) FROM notes WHERE tenant_id = %s "
                       "GROUP BY tenant_id", (tenant,))
        rows = out["results"][0]["rows"]  # type: ignore[index]
        assert [(r["tenant_id"], int(r["n"]), r["top"]) for r in rows] == [tuple(w) for w in want], tenant
        assert int(out["results"][1]["rows"][0]["n"]) == 2  # type: ignore[index]


def _split_done(hub: Path) -> bool:
    if not hub.is_file():
        return False
    db = apsw.Connection(str(hub), flags=apsw.SQLITE_OPEN_READONLY)
    db.set_busy_timeout(10_000)
    try:
        return (state.read_record(db, "tenants", "split") or {}).get("status") == "done"
    finally:
        db.close()


def _start_sync(dsn: str, config: Path, pattern: str, cwd: Path) -> subprocess.Popen[str]:
    env = _cli_env({"PG2EDGE_STAGING_DIR": str(cwd / "staging")})
    return subprocess.Popen([sys.executable, "-m", "pg2edge", "sync", "--source", dsn, "--config", str(config),
                             "--tenant-pattern", pattern, "--heartbeat", "0.2"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_fifty_tenants_under_writes_survive_five_sigkills(pg_dsn: str, sqld_namespaces: SqldServer, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    server = sqld_namespaces
    run_sql(pg_dsn, *SCHEMA,
            "INSERT INTO notes SELECT 't' || (g % 50), g, 'note ' || g FROM generate_series(1, 2000) g")
    config = _toml(server, tmp_path, max_open=10, max_connections=4)
    stop = threading.Event()

    def write() -> None:  # inserts, updates and deletes across tenants; new tenants appear under load
        rng = random.Random(18)
        next_id = 100_000
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                tenant = f"t{rng.randrange(50)}" if rng.random() < 0.95 else f"late{rng.randrange(5)}"
                with conn.transaction():
                    conn.execute("INSERT INTO notes VALUES (%s, %s, 'w')", (tenant, next_id))
                    conn.execute("UPDATE notes SET body = body || '+' WHERE tenant_id = %s AND id = %s",
                                 (f"t{rng.randrange(50)}", rng.randrange(1, 2000)))
                    if rng.random() < 0.2:
                        conn.execute("DELETE FROM notes WHERE tenant_id = %s AND id = %s",
                                     (f"t{rng.randrange(50)}", rng.randrange(1, 2000)))
                next_id += 1
                time.sleep(0.004)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    rng = random.Random(5)
    kills = streaming_kills = 0
    hub = tmp_path / "hub" / "_shared.db"
    try:
        for run in range(5):
            proc = _start_sync(pg_dsn, config, server.tenant_pattern(), tmp_path)
            if run:  # the first kill lands in the snapshot or its split; the others while streaming
                deadline = time.monotonic() + 120
                while not _split_done(hub) and time.monotonic() < deadline:
                    time.sleep(0.2)
            time.sleep(rng.uniform(1.0, 3.0))
            assert proc.poll() is None, proc.communicate()[1]
            streaming_kills += _split_done(hub)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
    finally:
        stop.set()
        writer.join()
    assert kills == 5 and streaming_kills >= 4
    cfg = _config(server, tmp_path)
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up"
    _assert_tenants_equal_source(pg_dsn, server, cfg)
    recorded = {r["tenant"] for r in registry_of(cfg.shared_path).values()}
    assert recorded == {r[0] for r in pg_rows(pg_dsn, "SELECT DISTINCT tenant_id FROM notes")}
