"""`pg2edge resync`: re-copy chosen tables from a fresh snapshot while the others keep streaming."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_source_options, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "resync", help="re-copy chosen tables from a fresh exported snapshot while the sync keeps streaming",
        description="Mark the tables (their changes are buffered by the running sync from then on), take a "
                    "fresh exported snapshot on a temporary slot, copy the tables into shadow tables, then swap "
                    "them in and replay the buffered changes above the snapshot's LSN: each change applied "
                    "once. Also clears a pause. The temporary slot is dropped at the end.",
        example="pg2edge resync --source postgresql://app@db/shop --target shop.db --tables orders,customers",
        handler=_run)
    add_source_options(parser)
    add_target_option(parser)
    parser.add_argument("--tables", metavar="LIST", required=True,
                        help="comma-separated replica tables ('orders' or 'schema.table')")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.pipeline.resync import resync_tables

    config = load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})
    report = resync_tables(dsn=config.require_source(), target=config.require_target(), tables=args.tables,
                           options=config.translate)
    print(f"resync: {report.tables} rows at LSN {report.snapshot_lsn}; replayed {report.replayed} buffered "
          f"change(s) in {report.seconds:.1f} s")
    return 0
