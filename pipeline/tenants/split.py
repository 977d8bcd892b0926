"""The snapshot split: the normal snapshot into the hub (shared) file, then one file per tenant.

1. ``run_snapshot`` fills the hub file (``[tenants] shared_path``) with every
   published table: same publication, slot and exported snapshot as a plain
   replica, so the hub's position is the slot's consistent LSN.
2. For each distinct tenant value, :func:`create_tenant_file` creates the
   tenant file with the tenant DDL, ATTACHes the hub and copies
   ``WHERE <column> = ?`` of every tenant table (and, with ``shared = "every"``,
   every shared table) — rows, source identity, stream and position (the hub's
   position) in ONE SQLite transaction of that file. A file with a position is
   complete and is skipped on a rerun.
3. The hub then drops its tenant rows and records the split as done (one
   transaction). The hub keeps the shared tables: they are the shared file in
   ``shared = "file"`` mode and the seed of tenants that appear later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pg2edge import dsn as dsnlib
from pg2edge.config import TenantsConfig, TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sources.snapshot import published_tables, run_snapshot
from pg2edge.pipeline.tenants.errors import TenantIdError
from pg2edge.pipeline.tenants.ids import is_url_pattern, tenant_path
from pg2edge.pipeline.tenants.layout import TenantLayout, plan_layout
from pg2edge.pipeline.tenants.retry import check_tenant_prerequisites, mark_hub_stale
from pg2edge.translators.ddl import apply_ddl
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)

SPLIT_SCOPE, SPLIT_NAME = "tenants", "split"
Say = Callable[[str], None]


@dataclass
class TenantSnapshotReport:
    snapshot: Any = None  # pipeline.snapshot.SnapshotReport of the hub
    tenants: int = 0  # tenant files created now
    skipped: int = 0  # tenant files already complete
    rows: dict[str, int] = field(default_factory=dict)  # tenant -> rows copied now
    already_split: bool = False
    layout: TenantLayout | None = None


def tenant_text(value: Any, *, table: str) -> str:
    """A tenant column value read from SQLite as the id PostgreSQL would print (text or integer)."""
    if isinstance(value, bool) or isinstance(value, (bytes, float)):
        raise TenantIdError(f"tenant column of {table} holds {type(value).__name__} {value!r}: "
                            "use a text, integer or uuid tenant column")
    return "" if value is None else str(value)


def create_tenant_file(*, hub_path: str | Path, layout: TenantLayout, tenant: str, tenant_value: Any,
                       position: state.Position, identity: state.SourceIdentity | None,
                       stream: state.StreamInfo | None) -> tuple[Path, int | None]:
    """Create (or finish) ``tenant``'s file from the hub; returns (path, rows copied or None if it was complete)."""

    path = tenant_path(layout.config.pattern, tenant, table="(tenant file)", key=tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = open_replica(path)
    try:
        done = state.read_position(db)
        if done is not None and done.commit_lsn >= position.commit_lsn:
            return path, None  # complete (an older position: left by a split of a hub retaken since, redone)
        existing = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if not any(not n.startswith(("_pg2edge", "sqlite_")) for n in existing):
            apply_ddl(db, layout.plan)
        db.execute("ATTACH DATABASE ? AS hub", (str(Path(hub_path).resolve()),))
        rows = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                col = quote_ident(layout.column)
                for key, target in layout.tenant_file_tables().items():
                    t = quote_ident(target)
                    # the columns both hold: a column a Kafka schema record added reaches the hub with the
                    # batch that creates this file, after it (the hub's rows hold NULL there until then)
                    have = {r[1] for r in db.execute(f"PRAGMA hub.table_info({t})")}
                    cols = ", ".join(quote_ident(r[1]) for r in db.execute(f"PRAGMA main.table_info({t})")
                                     if r[1] in have)
                    db.execute(f"DELETE FROM main.{t}")
                    copy = f"INSERT INTO main.{t} ({cols}) SELECT {cols} FROM hub.{t}"
                    if key in layout.tenant_tables:
                        db.execute(f"{copy} WHERE {col} = ?", (tenant_value,))
                    else:
                        db.execute(copy)
                    rows += db.changes()
                    state.write_table(db, state.TableState(table=".".join(key), snapshot=state.SnapshotStatus.DONE,
                                                           snapshot_lsn=position.commit_lsn))
                if identity is not None:
                    state.write_source(db, identity)
                if stream is not None:
                    state.write_stream(db, stream)
                state.write_record(db, "tenant", "id", {"tenant": tenant})
                state.write_position(db, state.Position(commit_lsn=position.commit_lsn, end_lsn=position.end_lsn))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLITE_FULL may have rolled back already
                    db.execute("ROLLBACK")
                raise
        finally:
            db.execute("DETACH DATABASE hub")
        return path, rows
    finally:
        db.close()


def split_hub(*, hub_path: str | Path, layout: TenantLayout, say: Say = print) -> TenantSnapshotReport:
    """Split the hub's tenant tables into tenant files (exactly once; resumable)."""
    report = TenantSnapshotReport(layout=layout)
    hub = open_replica(hub_path)
    stack = ExitStack()
    try:
        if (state.read_record(hub, SPLIT_SCOPE, SPLIT_NAME) or {}).get("status") == "done":
            report.already_split = True
            return report
        position = state.read_position(hub)
        if position is None:
            raise state.StateError(f"{hub_path}: the hub file has no snapshot position; take the snapshot first")
        identity, stream = state.read_source(hub), state.read_stream(hub)
        col = quote_ident(layout.column)
        values: dict[str, Any] = {}
        remote = None
        if is_url_pattern(layout.config.pattern):  # one libSQL database per tenant (tenants/remote.py)
            from pg2edge.pipeline.tenants.remote import RemoteTenants, check_collisions, read_registry

            remote = stack.enter_context(closing(RemoteTenants(layout.config)))
        for (schema, name), target in layout.tenant_tables.items():
            for (value,) in hub.execute(f"SELECT DISTINCT {col} FROM {quote_ident(target)}"):
                tenant = tenant_text(value, table=f"{schema}.{name}")
                where, key = f"{schema}.{name}", {layout.column: value}
                if remote is not None:
                    remote.pattern.label(tenant, table=where, key=key)
                else:
                    tenant_path(layout.config.pattern, tenant, table=where, key=key)
                values.setdefault(tenant, value)
        if remote is not None:
            check_collisions(remote.pattern, sorted(values), read_registry(hub))  # before anything is created
        for tenant, value in sorted(values.items()):
            if remote is not None:
                rows = remote.seed(hub=hub, hub_path=hub_path, layout=layout, tenant=tenant, tenant_value=value,
                                   position=position, identity=identity, stream=stream)
            else:
                _, rows = create_tenant_file(hub_path=hub_path, layout=layout, tenant=tenant, tenant_value=value,
                                             position=position, identity=identity, stream=stream)
            if rows is None:
                report.skipped += 1
            else:
                report.tenants += 1
                report.rows[tenant] = rows
        with hub:
            for target in layout.tenant_tables.values():
                hub.execute(f"DELETE FROM {quote_ident(target)}")
            state.write_record(hub, SPLIT_SCOPE, SPLIT_NAME, {"status": "done", "tenants": len(values),
                                                              "lsn": position.commit_lsn})
        what = "tenant databases" if remote is not None else "tenant files"
        say(f"split into {len(values)} {what} ({report.tenants} created now, {report.skipped} already done)")
        return report
    finally:
        stack.close()
        hub.close()


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_tenant_snapshot(*, dsn: str, tenants: TenantsConfig, tables: str | Sequence[str] | None = None,
                        jobs: int = 2, options: TranslateConfig | None = None,
                        allow_replica_identity_full: bool = False, say: Say = print) -> TenantSnapshotReport:
    """Snapshot ``dsn`` into the hub file, then split it into one SQLite file per tenant."""

    options = options or TranslateConfig()
    check_tenant_prerequisites(dsn=dsn, tenants=tenants, tables=tables,
                               allow_replica_identity_full=allow_replica_identity_full)
    os.makedirs(os.path.dirname(os.path.abspath(tenants.shared_path)), exist_ok=True)
    for attempt in (1, 2):
        snap = run_snapshot(dsn=dsn, target=tenants.shared_path, tables=tables, jobs=jobs, options=options,
                            allow_replica_identity_full=allow_replica_identity_full, say=say)
        hub = open_replica(tenants.shared_path)
        try:
            names = state.read_stream(hub)
        finally:
            hub.close()
        assert names is not None
        layout = plan_layout(dsn, published_tables(dsn, names.publication), config=tenants, options=options)
        try:
            report = split_hub(hub_path=tenants.shared_path, layout=layout, say=say)
        except TenantIdError as exc:
            # The source's ids passed the check, so the hub holds a stale copy (an earlier run, or a row
            # changed since the check): the hub snapshot is retaken, now or by the next run.
            mark_hub_stale(tenants.shared_path)
            if attempt == 2:
                raise TenantIdError(f"{exc}; fix the row(s) on the source and rerun (the hub copy "
                                    f"{tenants.shared_path} is retaken then)") from None
            say(f"the hub copy {tenants.shared_path} holds a tenant id the source no longer has ({exc}); "
                "retaking the hub snapshot")
            continue
        report.snapshot = snap
        return report
    raise AssertionError("unreachable")
