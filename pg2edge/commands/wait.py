"""`pg2edge wait`: block until the replica has applied a source LSN (read-your-writes)."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "wait", help="wait until the replica has applied a source LSN (take pg_current_wal_lsn() after commit)",
        example="pg2edge wait --target http://127.0.0.1:8080 --lsn 0/16B3748 --timeout 5", handler=_run)
    add_target_option(parser)
    parser.add_argument("--lsn", required=True, help="the source LSN to wait for, e.g. 0/16B3748")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after (default 30); exit 1")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config

    config = load_config(None, overrides={"target": {"path": args.target}})
    from pg2edge.pipeline.lsn import format_lsn
    from pg2edge.pipeline.remote import resolve
    from pg2edge.pipeline.status import wait_for_lsn

    target = resolve(config.require_target(), config_token=config.target.token())
    if getattr(target, "kind", None) == "d1":  # D1: read on its primary, and print the Sessions API bookmark
        from pg2edge.pipeline.d1.status import wait_for_lsn as wait_d1

        reached = wait_d1(target, args.lsn, timeout=args.timeout)
        print(f"replica at {format_lsn(reached.position.visible_lsn)} >= {args.lsn}; D1 bookmark {reached.bookmark}")
        return 0
    pos = wait_for_lsn(target, args.lsn, timeout=args.timeout)
    print(f"replica at {format_lsn(pos.visible_lsn)} >= {args.lsn}")
    return 0
