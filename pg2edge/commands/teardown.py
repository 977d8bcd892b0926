"""`pg2edge teardown`: drop the slot and publication a replica created on the source."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_source_options, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "teardown", help="undo every change pg2edge made on the source for this replica (slot, publication)",
        example="pg2edge teardown --source postgresql://app@db/shop --target shop.db", handler=_run)
    add_source_options(parser)
    add_target_option(parser)


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.pipeline.teardown import teardown_replica

    config = load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})
    from pg2edge.pipeline.remote import resolve

    target = resolve(config.require_target(), config_token=config.target.token())
    for description in teardown_replica(dsn=config.require_source(), target=target):  # type: ignore[arg-type]
        print(f"undone: {description}")
    return 0
