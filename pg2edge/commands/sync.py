"""`pg2edge sync`: the continuous sync daemon (snapshot if needed, then stream)."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_source_options, add_table_options, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "sync", help="snapshot if needed, then stream every change into the SQLite replica",
        description="The sync daemon. Applies whole source transactions in commit order, exactly once; "
                    "SIGTERM/SIGINT finish the current batch, acknowledge it and exit 0.",
        example="pg2edge sync --source postgresql://app@db/shop --target shop.db --until-caught-up",
        handler=_run)
    add_source_options(parser)
    add_target_option(parser)
    add_table_options(parser)
    parser.add_argument("--until-caught-up", action="store_true",
                        help="exit 0 once the replica has applied the source's WAL position taken at start")
    parser.add_argument("--heartbeat", default="1s", metavar="DURATION",
                        help="interval of heartbeat messages that keep an idle slot moving (default 1s)")
    parser.add_argument("--warn-retained-wal", type=int, default=1024**3, metavar="BYTES",
                        help="log a warning when the slot retains more WAL than this on the source (default 1 GiB)")
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on this port")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config, parse_duration
    from pipeline.daemon import run_sync
    from pipeline.lsn import format_lsn

    config = load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})
    metrics = None
    if args.metrics_port:
        from pipeline.metrics import Metrics

        metrics = Metrics()
        metrics.serve(args.metrics_port)
    report = run_sync(metrics=metrics, dsn=config.require_source(), target=config.require_target(), tables=args.tables, jobs=args.jobs,
                      options=config.translate, until_caught_up=args.until_caught_up,
                      heartbeat_interval=parse_duration(args.heartbeat),
                      retained_wal_warn_bytes=args.warn_retained_wal,
                      allow_replica_identity_full=args.allow_replica_identity_full)
    at = format_lsn(report.position.visible_lsn) if report.position else "-"
    print(f"sync stopped ({report.stopped_by}): {report.transactions} transactions, {report.rows} row changes "
          f"applied; replica at {at}")
    return 0
