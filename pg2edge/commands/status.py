"""`pg2edge status`: applied LSN, lag and retained WAL of one or more replicas."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pg2edge.commands import add_command


def register(sub: Any) -> None:
    parser = add_command(
        sub, "status", help="show what replicas have applied, their lag and the WAL their slot retains",
        example="pg2edge status --target edge-a.db --target edge-b.db --source postgresql://app@db/shop --format json",
        handler=_run)
    parser.add_argument("--target", metavar="FILE.db|URL", action="append",
                        help="a SQLite replica file or a remote URL (libsql://, https://, http://; token from "
                             "$PG2EDGE_TARGET_AUTH_TOKEN or $TURSO_AUTH_TOKEN); repeat for several (fan-out "
                             "replicas) (default: [target] path in pg2edge.toml)")
    parser.add_argument("--source", metavar="DSN", help="also measure lag and retained WAL against the source")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.pipeline.remote import resolve
    from pg2edge.pipeline.status import replica_status

    config = load_config(None, overrides={"target": {"path": None}})
    targets = args.target or [config.require_target()]
    statuses = [replica_status(resolve(t, config_token=config.target.token()), source=args.source).as_dict()
                for t in targets]
    if args.format == "json":
        print(json.dumps(statuses[0] if len(statuses) == 1 else statuses, indent=2))
        return 0
    for i, status in enumerate(statuses):
        if i:
            print()
        for key, value in status.items():
            print(f"{key:<20} {'-' if value is None else value}")
    return 0
