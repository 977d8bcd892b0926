"""`pg2edge sample load|workload`: the reference article's shop database and its traffic."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_source_options


def register(sub: Any) -> None:
    parser = add_command(
        sub, "sample", help="create the sample shop database or run its read/write workload",
        example="pg2edge sample load --source postgresql://postgres@127.0.0.1/shop && "
                "pg2edge sample workload --source postgresql://postgres@127.0.0.1/shop --scale 2",
        handler=_run)
    parser.add_argument("action", choices=("load", "workload"),
                        help="load: create and fill the eight tables (then reset statistics); "
                             "workload: run reads and writes at the article's ratios")
    add_source_options(parser)
    parser.add_argument("--scale", type=float, default=1.0, help="workload size multiplier (default 1)")
    parser.add_argument("--no-reset", action="store_true", help="load: keep the statistics the load produced")


def _run(args: argparse.Namespace) -> int:
    from pg2edge import sample, workload
    from pg2edge.config import load_config

    dsn = load_config(args.config, overrides={"source": {"dsn": args.source}}).require_source()
    if args.action == "load":
        counts = sample.install(dsn, reset=not args.no_reset)
        for table, rows in counts.items():
            print(f"{table:<18} {rows:>8} rows")
        return 0
    planned = workload.run(dsn, scale=args.scale)
    for table, load in planned.items():
        print(f"{table:<18} reads {load['reads']:>8}  writes {load['writes']:>6}")
    return 0
