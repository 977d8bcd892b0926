"""`pg2edge dlq`: inspect, replay or drop the changes a replica could not apply."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pg2edge.commands import add_command, add_source_options


def register(sub: Any) -> None:
    parser = add_command(
        sub, "dlq", help="list, show, replay or drop changes in a replica's dead-letter queue",
        description="Changes that failed every retry wait in the replica's dead-letter queue (table "
                    "_pg2edge_queue); later changes to the same key wait behind them. After fixing the cause, "
                    "`replay` applies them and what queued behind them, in order (reads the source catalog "
                    "for the value codec).",
        example="pg2edge dlq replay --all --target shop.db --source postgresql://app@db/shop", handler=_run)
    parser.add_argument("action", choices=("list", "show", "replay", "drop"))
    parser.add_argument("id", nargs="?", type=int, help="queued change id (show, replay, drop)")
    parser.add_argument("--all", action="store_true", help="replay every change in the DLQ")
    parser.add_argument("--target", metavar="FILE.db|URL",
                        help="the SQLite replica file, or a libSQL/Turso URL (token from $PG2EDGE_TARGET_AUTH_TOKEN)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_source_options(parser)


def _print(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['id']:>6} {r['status']:<8} {r['op']} {', '.join(r['keys'])} attempts={r['attempts']} "
              f"error={r['error'] or '-'}")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.errors import ConfigError
    from pg2edge.pipeline.dlq import replay_dlq
    from pg2edge.pipeline.sinks import retry
    from pg2edge.pipeline.status import _open_readonly

    config = load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})
    from pg2edge.pipeline.remote import is_remote, resolve

    target = resolve(config.require_target(), config_token=config.target.token())
    if args.action in ("show", "drop") or (args.action == "replay" and not args.all):
        if args.id is None:
            raise ConfigError(f"dlq {args.action} needs an id" + (" or --all" if args.action == "replay" else ""))
    if args.action in ("list", "show"):
        conn = _open_readonly(target)
        try:
            if args.action == "show":
                _print([retry.get_change(conn, args.id).as_dict()], "json")
            else:
                rows = [c.as_dict() for c in retry.list_queue(conn)]
                for r in rows:
                    r.pop("event") if args.format == "table" else None
                _print(rows, args.format)
        finally:
            conn.close()
        return 0
    if args.action == "drop":
        from pg2edge.pipeline.sinks.sqlite import open_replica

        conn = _open_readonly(target) if is_remote(target) else open_replica(target)  # type: ignore[arg-type]
        try:
            change = retry.drop_change(conn, args.id)
        finally:
            conn.close()
        print(f"dropped change {change.id} ({', '.join(change.keys)})")
        return 0
    applied, left = replay_dlq(target=target, dsn=config.require_source(), ids=None if args.all else [args.id],
                                     options=config.translate)
    print(f"replayed: {applied} change(s) applied; {len(left)} still in the DLQ")
    for c in left:
        print(f"  {c.id}: {c.error}")
    return 1 if left else 0
