"""Retrying a tenant split: prerequisites checked on the source first, a stale hub copy retaken.

A tenant snapshot first copies every published table into the hub file, then
splits it by tenant. A split that fails on a tenant id (empty, too long) must
not fail forever once the operator fixed the rows on the source:

* :func:`check_tenant_prerequisites` checks the tenant ids on the source (and
  the hub target, the tenant folder and the source prerequisites) before
  anything changes on the source, so a bad id is reported by name up front;
* when the hub still holds an id the source no longer has (a copy from before
  the fix), :func:`mark_hub_stale` marks its snapshot run stale and the
  snapshot is retaken (slot recreated, hub tables emptied and recopied); tenant
  files of an older split are redone from the new hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import apsw

from pg2edge.config import TenantsConfig
from pg2edge.pipeline import preflight, state
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.targetfile import check_writable, sqlite_error
from pg2edge.pipeline.tenants.ids import PLACEHOLDER, check_pattern, is_url_pattern

SPLIT_SCOPE, SPLIT_NAME = "tenants", "split"


def _hub_state(path: str | Path) -> tuple[state.StreamInfo | None, bool]:
    """(the hub's stream, whether its split is done); (None, False) for a new hub."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return None, False
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as exc:
        raise sqlite_error(path, exc) from None
    try:
        split = state.read_record(conn, SPLIT_SCOPE, SPLIT_NAME) or {}
        return state.read_stream(conn), split.get("status") == "done"
    except apsw.Error as exc:
        raise sqlite_error(path, exc) from None
    finally:
        conn.close()


def check_tenant_prerequisites(*, dsn: str, tenants: TenantsConfig, tables: str | Sequence[str] | None,
                               allow_replica_identity_full: bool) -> None:
    """The hub and tenant folder are usable, the source is ready, and (before the split) every tenant id is."""
    from pg2edge.pipeline.sources.snapshot import published_tables

    check_pattern(tenants.pattern)
    if is_url_pattern(tenants.pattern):  # the provider answers and would create databases (nothing created)
        from pg2edge.pipeline.tenants.remote import make_provisioner, parse_url_pattern

        provisioner = make_provisioner(tenants, parse_url_pattern(tenants.pattern))
        try:
            provisioner.check()
        finally:
            provisioner.close()
    else:
        check_writable(tenants.pattern.replace(PLACEHOLDER, "tenant"), create_dirs=True)
    pre = preflight.check_snapshot(dsn=dsn, target=tenants.shared_path, tables=tables,
                                   allow_replica_identity_full=allow_replica_identity_full, create_dirs=True)
    stream, split_done = _hub_state(tenants.shared_path)
    if split_done:
        return
    selected = list(pre.tables) or (published_tables(dsn, stream.publication) if stream else [])
    preflight.check_tenant_ids(dsn, selected, column=tenants.column)
    if is_url_pattern(tenants.pattern):
        from pg2edge.pipeline.tenants.remote import check_source_labels, parse_url_pattern

        check_source_labels(dsn, selected, column=tenants.column, pattern=parse_url_pattern(tenants.pattern),
                            hub_path=tenants.shared_path)


def mark_hub_stale(path: str | Path) -> None:
    """Make the next ``run_snapshot`` of the hub start a clean snapshot (its run record no longer 'done')."""
    db = open_replica(path)
    try:
        with db:
            run = state.read_run(db)
            if run:
                state.write_run(db, replace(run, status=state.RunStatus.STALE))
    finally:
        db.close()
