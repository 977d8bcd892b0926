"""`pg2edge snapshot`: publication, slot + exported snapshot, parallel copy into SQLite."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pg2edge.commands import (
    add_command,
    add_snapshot_path_option,
    add_source_options,
    add_table_options,
    add_target_option,
    add_tenant_options,
)


def register(sub: Any) -> None:
    parser = add_command(
        sub, "snapshot", help="copy the source tables into a SQLite replica, consistent with a new replication slot",
        description="Create the publication and a pgoutput slot with an exported snapshot, then copy every "
                    "selected table in parallel. Every change made on the source is printed; "
                    "`pg2edge teardown` undoes them. A rerun after a crash resumes (or restarts cleanly).",
        example="pg2edge snapshot --source postgresql://app@db/shop --target shop.db --tables 'product*,categories' --jobs 4",
        handler=_run)
    add_source_options(parser)
    add_target_option(parser)
    add_table_options(parser)
    add_snapshot_path_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_tenant_options(parser)


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.pipeline.sources.snapshot import run_snapshot
    from pg2edge.progress import table_progress

    config = load_config(args.config, overrides={"source": {"dsn": args.source},
                                                 "target": {"path": args.target, "snapshot_path": args.snapshot_path},
                                                 "tenants": {"pattern": args.tenant_pattern,
                                                             "column": args.tenant_column}})
    if args.tenant_pattern:
        return _run_tenants(args, config)
    from pg2edge.pipeline.remote import RemoteTarget, resolve

    target = resolve(config.require_target(), config_token=config.target.token())
    if isinstance(target, RemoteTarget):
        return _run_remote(args, config, target)
    with table_progress(enabled=not args.no_progress and sys.stderr.isatty()) as advance:
        report = run_snapshot(dsn=config.require_source(), target=config.require_target(), tables=args.tables, jobs=args.jobs,
                              options=config.translate, allow_replica_identity_full=args.allow_replica_identity_full,
                              on_progress=advance)
    if report.already_complete:
        print(f"{config.require_target()}: snapshot already complete; run `pg2edge sync` to stream changes")
        return 0
    for table, reason in report.not_replicated:
        print(f"not replicated: {table}: {reason}")
    rate = report.rows / report.seconds if report.seconds else 0.0
    print(f"snapshot of {len(report.tables)} tables, {report.rows} rows in {report.seconds:.1f} s "
          f"({rate:,.0f} rows/s); slot {report.slot}, publication {report.publication}")
    return 0


def _run_remote(args: argparse.Namespace, config: Any, target: Any) -> int:
    """The snapshot of a libSQL/Turso URL: direct (rows over Hrana as they are read) or staged in a local
    file, then uploaded; both resumable (--snapshot-path)."""
    from pg2edge.pipeline.remote import HranaClient
    from pg2edge.pipeline.sinks.libsql import snapshot_into_remote
    from pg2edge.progress import table_progress

    def progress(table: str, sent: int, total: int) -> None:
        if not args.no_progress:
            print(f"  upload {table}: {sent}/{total} rows", file=sys.stderr)

    with HranaClient(target) as client, \
            table_progress(enabled=not args.no_progress and sys.stderr.isatty()) as advance:
        report = snapshot_into_remote(dsn=config.require_source(), target=target, client=client, say=print,
                                      on_upload=progress, on_progress=advance, tables=args.tables, jobs=args.jobs,
                                      options=config.translate, path=config.target.snapshot_path,
                                      allow_replica_identity_full=args.allow_replica_identity_full)
    if report.already_complete:
        print(f"{target}: snapshot already complete; run `pg2edge sync` to stream changes")
        return 0
    for table, reason in report.not_replicated:
        print(f"not replicated: {table}: {reason}")
    print(f"snapshot of {len(report.tables)} tables, {report.rows} rows into {target}; slot {report.slot}, "
          f"publication {report.publication}")
    return 0


def _run_tenants(args: argparse.Namespace, config: Any) -> int:
    from pg2edge.pipeline.tenants.split import run_tenant_snapshot

    report = run_tenant_snapshot(dsn=config.require_source(), tenants=config.tenants, tables=args.tables,
                                 jobs=args.jobs, options=config.translate,
                                 allow_replica_identity_full=args.allow_replica_identity_full)
    print(f"tenant snapshot: {report.tenants} tenant file(s) created, {report.skipped} already complete; "
          f"shared/hub file {config.tenants.shared_path}")
    return 0
