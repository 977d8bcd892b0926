"""The tenant sync loop: tenant snapshot if needed, then route changes into the tenant files."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pg2edge import dsn as dsnlib
from pg2edge.config import TenantsConfig, TranslateConfig
from pg2edge.pipeline import state
from pg2edge.pipeline.engine import EngineReport, StopFlag
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sinks.tenants import TenantRouter, TenantSink
from pg2edge.pipeline.sources.cdc import CdcSource, stream_slot
from pg2edge.pipeline.sources.snapshot import published_tables
from pg2edge.pipeline.tenants.layout import plan_layout
from pg2edge.pipeline.tenants.split import TenantSnapshotReport, run_tenant_snapshot

# Tenant databases: a batch costs one HTTP request per touched tenant (plus opening its sink), and
# the replication connection answers no keepalive while a batch is applied (wal_sender_timeout, 60 s
# by default): a batch into tenant databases takes at most this many row changes, and the router
# sends a status update (at the acknowledged position) every few seconds while it applies one.
REMOTE_MAX_EVENTS = 5_000


def _bounded(router: TenantRouter) -> Callable[[CdcSource], CdcSource]:
    def wrap(cdc: CdcSource) -> CdcSource:
        cdc.max_events = min(cdc.max_events, REMOTE_MAX_EVENTS)
        router.keepalive = lambda: cdc.stream.ack(0)  # a status update at the acknowledged position
        return cdc
    return wrap


@dataclass
class TenantSyncReport(EngineReport):
    snapshot: TenantSnapshotReport | None = None
    tenants_created: int = 0
    peak_open_files: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # deleted tenant -> its changes not applied


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_tenant_sync(*, dsn: str, tenants: TenantsConfig, tables: str | Sequence[str] | None = None,
                    jobs: int = 2, options: TranslateConfig | None = None, until_caught_up: bool = False,
                    heartbeat_interval: float = 1.0, allow_replica_identity_full: bool = False,
                    stop: threading.Event | None = None, say: Callable[[str], None] = print,
                    max_wait: float = 0.2, metrics: Metrics | None = None) -> TenantSyncReport:
    """Tenant snapshot if needed, then stream until stopped (or caught up with ``until_caught_up``):
    the engine pairing a :class:`CdcSource` with a :class:`TenantSink`."""
    options = options or TranslateConfig()
    report = TenantSyncReport()
    report.snapshot = run_tenant_snapshot(dsn=dsn, tenants=tenants, tables=tables, jobs=jobs, options=options,
                                          allow_replica_identity_full=allow_replica_identity_full, say=say)
    hub = open_replica(tenants.shared_path)
    flag = StopFlag(stop)
    restore = flag.install()
    try:
        names, pos = state.read_stream(hub), state.read_position(hub)
        assert names is not None and pos is not None
        layout = report.snapshot.layout or plan_layout(dsn, published_tables(dsn, names.publication),
                                                       config=tenants, options=options)
        router = TenantRouter(layout=layout, hub=hub, hub_path=tenants.shared_path,
                              mappings=build_mappings(dsn, hub, names.publication, options))
        what = "database(s)" if router.remote is not None else "file(s)"
        say(f"routing {len(layout.tenant_tables)} tenant table(s) by {tenants.column!r} into "
            f"{len(router.known)} tenant {what}; streaming from {format_lsn(pos.end_lsn)}")
        sink = TenantSink(router, label=str(tenants.pattern))
        try:
            return stream_slot(dsn, names, pos.end_lsn, sink, flag=flag, report=report,
                               heartbeat_interval=heartbeat_interval, until_caught_up=until_caught_up,
                               max_wait=max_wait, metrics=metrics, say=say,
                               wrap=_bounded(router) if router.remote is not None else None)
        finally:
            report.tenants_created = router.created
            report.peak_open_files = router.pool.peak
            report.ignored = dict(router.ignored)
            sink.close()
    finally:
        restore()
        hub.close()
