"""`pg2edge status`: applied LSN, lag and retained WAL of a replica."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pg2edge.commands import add_command, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "status", help="show what a replica has applied, its lag and the WAL its slot retains",
        example="pg2edge status --target shop.db --source postgresql://app@db/shop --format json", handler=_run)
    add_target_option(parser)
    parser.add_argument("--source", metavar="DSN", help="also measure lag and retained WAL against the source")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config

    target = load_config(None, overrides={"target": {"path": args.target}}).require_target()
    from pipeline.status import replica_status

    status = replica_status(target, source=args.source)
    if args.format == "json":
        print(json.dumps(status.as_dict(), indent=2))
        return 0
    for key, value in status.as_dict().items():
        print(f"{key:<20} {'-' if value is None else value}")
    return 0
