"""Database-per-tenant split end to end: real PostgreSQL, real SQLite files, 50 tenants."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from pg2edge.config import TenantsConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.tenants.admin import list_tenants
from pg2edge.pipeline.tenants.daemon import run_tenant_sync
from pg2edge.pipeline.tenants.errors import TenantIdError, TenantTableError
from pg2edge.pipeline.tenants.ids import tenant_path
from tests.support.rows import file_rows, pg_rows, run_sql


def _quiet(_: str) -> None:
    pass


def _config(tmp_path: Path, **kw) -> TenantsConfig:
    return TenantsConfig(pattern=str(tmp_path / "tenants" / "{tenant}.db"),
                         shared_path=str(tmp_path / "tenants" / "_shared.db"), **kw)


def _assert_split(dsn: str, cfg: TenantsConfig, *, shared_in_tenants: bool) -> None:
    tenants = [r[0] for r in pg_rows(dsn, "SELECT DISTINCT tenant_id FROM notes ORDER BY 1")]
    files = list_tenants(cfg.pattern)
    assert set(tenants) <= set(files)
    shared = pg_rows(dsn, "SELECT id, name FROM plans ORDER BY id")
    for tenant, tf in files.items():
        want = pg_rows(dsn, "SELECT tenant_id, id, body FROM notes WHERE tenant_id = %s ORDER BY id", (tenant,))
        assert file_rows(tf.path, "SELECT tenant_id, id, body FROM notes ORDER BY id") == want, tenant
        got_shared = file_rows(tf.path, "SELECT id, name FROM plans ORDER BY id") if shared_in_tenants else []
        assert got_shared == (shared if shared_in_tenants else []), tenant
    hub = Path(cfg.shared_path)
    assert file_rows(hub, "SELECT id, name FROM plans ORDER BY id") == shared
    assert file_rows(hub, "SELECT count(*) FROM notes") == [(0,)]


SCHEMA = ("CREATE TABLE notes (tenant_id text, id int, body text, PRIMARY KEY (tenant_id, id))",
          "CREATE TABLE plans (id int PRIMARY KEY, name text)",
          "INSERT INTO plans VALUES (1, 'free'), (2, 'pro')",
          "INSERT INTO notes SELECT 't' || (g % 50), g, 'note ' || g FROM generate_series(1, 1000) g")


@pytest.mark.parametrize("shared", ["every", "file"])
def test_fifty_tenants_snapshot_and_cdc(pg_dsn: str, tmp_path: Path, shared: str) -> None:
    run_sql(pg_dsn, *SCHEMA)
    cfg = _config(tmp_path, shared=shared, max_open=5)
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.snapshot.tenants == 50 and len(list_tenants(cfg.pattern)) == 50
    _assert_split(pg_dsn, cfg, shared_in_tenants=shared == "every")
    # every file holds its position = the snapshot's consistent LSN, in its own state table
    db = apsw.Connection(str(tenant_path(cfg.pattern, "t7")))
    assert state.read_position(db).commit_lsn == report.snapshot.snapshot.consistent_lsn
    db.close()

    run_sql(pg_dsn,
         "INSERT INTO notes SELECT 't' || (g % 50), g, 'new ' || g FROM generate_series(1001, 1200) g",
         "UPDATE notes SET body = body || ' edited' WHERE id % 7 = 0",
         "DELETE FROM notes WHERE id % 11 = 0",
         "UPDATE notes SET tenant_id = 't3' WHERE tenant_id = 't4' AND id = 4",  # a tenant move
         "UPDATE notes SET tenant_id = 't9' WHERE tenant_id = 't8'",  # a whole tenant moves out
         "INSERT INTO notes VALUES ('brand-new', 1, 'first note of a new tenant')",
         "BEGIN; INSERT INTO plans VALUES (3, 'team'); UPDATE plans SET name = 'gratis' WHERE id = 1; "
         "INSERT INTO notes VALUES ('t1', 5000, 'with a shared change'); COMMIT",
         "DELETE FROM plans WHERE id = 2")
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up" and report.transactions >= 8
    assert report.tenants_created == 1 and report.peak_open_files <= 5
    assert "brand-new" in list_tenants(cfg.pattern)
    _assert_split(pg_dsn, cfg, shared_in_tenants=shared == "every")
    assert file_rows(tenant_path(cfg.pattern, "t8"), "SELECT count(*) FROM notes") == [(0,)]

    # a restart replays nothing twice: files skip what they hold
    run_sql(pg_dsn, "UPDATE notes SET body = 'again' WHERE id = 1", "TRUNCATE notes",
         "INSERT INTO notes VALUES ('t2', 1, 'after truncate')")
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    _assert_split(pg_dsn, cfg, shared_in_tenants=shared == "every")
    assert sum(file_rows(tf.path, "SELECT count(*) FROM notes")[0][0]
               for tf in list_tenants(cfg.pattern).values()) == 1


def test_hostile_tenant_values_are_encoded_or_refused(pg_dsn: str, tmp_path: Path) -> None:
    run_sql(pg_dsn, SCHEMA[0], SCHEMA[1],
         "INSERT INTO notes VALUES ('../../etc/passwd', 1, 'x'), ('a/b', 1, 'y'), ('.hidden', 1, 'z')")
    cfg = _config(tmp_path, max_open=2)
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    folder = (tmp_path / "tenants").resolve()
    files = list_tenants(cfg.pattern)
    assert set(files) == {"../../etc/passwd", "a/b", ".hidden"}
    assert all(f.path.parent == folder for f in files.values())
    assert not (tmp_path / "etc").exists()
    run_sql(pg_dsn, "INSERT INTO notes VALUES ('', 2, 'empty tenant')")
    with pytest.raises(TenantIdError, match="empty tenant id.*public.notes"):
        run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)


def test_tenant_table_without_the_column_in_its_key_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    run_sql(pg_dsn, "CREATE TABLE events (id int PRIMARY KEY, tenant_id text, v text)",
         "INSERT INTO events VALUES (1, 'a', 'x')")
    with pytest.raises(TenantTableError, match="public.events"):
        run_tenant_sync(dsn=pg_dsn, tenants=_config(tmp_path), until_caught_up=True, say=_quiet)


def test_cli_sync_list_and_delete(pg_dsn: str, tmp_path: Path, run_cli) -> None:
    run_sql(pg_dsn, *SCHEMA)
    pattern = str(tmp_path / "t" / "{tenant}.db")
    done = run_cli("sync", "--source", pg_dsn, "--tenant-pattern", pattern, "--until-caught-up")
    assert done.returncode == 0, done.stderr
    assert "tenant sync stopped (caught up)" in done.stdout
    listed = run_cli("tenant", "list", "--pattern", pattern)
    assert listed.returncode == 0 and "50 tenant file(s)" in listed.stdout
    assert (tmp_path / "t" / "_shared.db").exists()
    refused = run_cli("tenant", "delete", "t3", "--pattern", pattern)
    assert refused.returncode == 2 and "--yes" in refused.stderr + refused.stdout
    assert (tmp_path / "t" / "t3.db").exists()
    removed = run_cli("tenant", "delete", "t3", "--pattern", pattern, "--yes")
    assert removed.returncode == 0 and f"removed {tmp_path / 't' / 't3.db'}" in removed.stdout
    assert not (tmp_path / "t" / "t3.db").exists()
    assert "49 tenant file(s)" in run_cli("tenant", "list", "--pattern", pattern).stdout
    escape = run_cli("tenant", "delete", "../t/t4", "--pattern", pattern, "--yes")
    assert escape.returncode == 2 and (tmp_path / "t" / "t4.db").exists()


def test_crash_between_tenant_files_and_hub_applies_nothing_twice(pg_dsn: str, tmp_path: Path) -> None:
    # a keyless REPLICA IDENTITY FULL tenant table: a transaction applied twice would duplicate rows
    run_sql(pg_dsn, "CREATE TABLE logs (tenant_id text NOT NULL, msg text)", "ALTER TABLE logs REPLICA IDENTITY FULL",
         "INSERT INTO logs SELECT 't' || (g % 10), 'boot' FROM generate_series(1, 30) g")
    cfg = _config(tmp_path, max_open=3)
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn, *[f"INSERT INTO logs VALUES ('t{i % 10}', 'm{i}')" for i in range(40)])
    blocker = apsw.Connection(cfg.shared_path)
    blocker.execute("BEGIN EXCLUSIVE")  # the hub cannot commit: tenant files commit, then the batch fails
    try:
        with pytest.raises(apsw.BusyError):
            run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet, heartbeat_interval=3600)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    hub = apsw.Connection(cfg.shared_path)
    hub_lsn = state.read_position(hub).commit_lsn
    hub.close()
    ahead = 0
    for tf in list_tenants(cfg.pattern).values():
        db = apsw.Connection(str(tf.path))
        ahead += state.read_position(db).commit_lsn > hub_lsn
        db.close()
    assert ahead > 0  # some tenant files committed the batch the hub did not
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    for tenant, tf in list_tenants(cfg.pattern).items():
        want = pg_rows(pg_dsn, "SELECT msg FROM logs WHERE tenant_id = %s ORDER BY msg", (tenant,))
        assert file_rows(tf.path, "SELECT msg FROM logs ORDER BY msg") == want, tenant


def test_a_column_added_on_the_source_reaches_every_tenant_file(pg_dsn: str, tmp_path: Path) -> None:
    """ADD COLUMN while the tenant sync streams: every tenant file takes the new shape, also those whose first
    change after it comes later in another transaction (PostgreSQL describes a relation only once per stream)
    and those that get no change at all; a later row with the new column then applies in any tenant."""
    run_sql(pg_dsn, *SCHEMA)
    cfg = _config(tmp_path, shared="every", max_open=5)
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    run_sql(pg_dsn,
            "ALTER TABLE notes ADD COLUMN rank int",
            "INSERT INTO notes VALUES ('t1', 9001, 'ranked', 1)",
            "INSERT INTO notes VALUES ('t2', 9002, 'ranked later', 2)",
            "UPDATE notes SET rank = 3 WHERE tenant_id = 't3' AND id = 3")
    report = run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up"
    for tenant, tf in list_tenants(cfg.pattern).items():
        want = pg_rows(pg_dsn, "SELECT tenant_id, id, body, rank FROM notes WHERE tenant_id = %s ORDER BY id",
                       (tenant,))
        assert file_rows(tf.path, "SELECT tenant_id, id, body, rank FROM notes ORDER BY id") == want, tenant
    # a restart's Relation messages describe the same shape: only the tenant with a change is written
    untouched = state.read_position(apsw.Connection(str(tenant_path(cfg.pattern, "t6"))))
    run_sql(pg_dsn, "INSERT INTO notes VALUES ('t5', 9005, 'after a restart', 5)")
    run_tenant_sync(dsn=pg_dsn, tenants=cfg, until_caught_up=True, say=_quiet)
    assert state.read_position(apsw.Connection(str(tenant_path(cfg.pattern, "t6")))) == untouched
    assert file_rows(tenant_path(cfg.pattern, "t5"), "SELECT rank FROM notes WHERE id = 9005") == [(5,)]
