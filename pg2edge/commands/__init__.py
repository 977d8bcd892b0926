"""CLI command modules: each has ``register(subparsers)`` and a handler; no business logic."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def add_command(
    sub: Any, name: str, *, help: str, example: str, handler: Handler, description: str | None = None
) -> argparse.ArgumentParser:
    """Add a sub-command whose --help ends with a worked example (every command has one)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"Example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """--source and --config, shared by every command that talks to PostgreSQL."""
    parser.add_argument("--source", metavar="DSN",
                        help="source PostgreSQL DSN (default: $PG2EDGE_SOURCE or [source] dsn in pg2edge.toml)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")


def add_output_options(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    parser.add_argument("--format", choices=formats, default=formats[0], help=f"output format (default: {formats[0]})")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE instead of standard output")


def add_target_option(parser: argparse.ArgumentParser, *, remote: bool = True) -> None:
    if not remote:
        parser.add_argument("--target", metavar="FILE.db",
                            help="the SQLite replica file (default: [target] path in pg2edge.toml)")
        return
    parser.add_argument("--target", metavar="FILE.db|URL",
                        help="the SQLite replica file, or a libSQL/Turso URL (libsql://HOST, https://HOST, "
                             "http://HOST:PORT), or the pg2edge D1 Worker (d1+https://HOST); token from "
                             "$PG2EDGE_TARGET_AUTH_TOKEN, $TURSO_AUTH_TOKEN or [target] auth_token, never a flag "
                             "(default: [target] path in pg2edge.toml)")


def resolve_target(args: argparse.Namespace) -> Any:
    """The command's target, resolved the one way every command uses: ``--target``, else ``[target] path``;
    a URL becomes a RemoteTarget whose token is $PG2EDGE_TARGET_AUTH_TOKEN, else $TURSO_AUTH_TOKEN, else
    ``[target] auth_token`` of the config file (never a flag). A file path is returned unchanged."""
    from pg2edge.config import load_config
    from pg2edge.pipeline.remote import resolve

    config = load_config(getattr(args, "config", None), overrides={"target": {"path": getattr(args, "target", None)}})
    return resolve(config.require_target(), config_token=config.target.token())


def add_snapshot_path_option(parser: argparse.ArgumentParser) -> None:
    """--snapshot-path for a libSQL/Turso URL target (snapshot and sync)."""
    parser.add_argument("--snapshot-path", choices=("direct", "staged"), default=None,
                        help="libSQL/Turso URL targets: 'direct' sends the rows straight from PostgreSQL over Hrana; "
                             "'staged' builds a local staging file first, then uploads it (default: [target] "
                             "snapshot_path in pg2edge.toml, else direct)")


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """--tables, --jobs and the replica-identity flag shared by snapshot and sync."""
    parser.add_argument("--tables", metavar="LIST",
                        help="comma-separated names or globs, e.g. 'orders,product*' (default: every "
                             "replicable table of schema public; the rest are listed with the reason)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="parallel copy workers (default 2)")
    parser.add_argument("--allow-replica-identity-full", action="store_true",
                        help="set REPLICA IDENTITY FULL on selected tables without a primary key "
                             "(a change on the source, undone by teardown) instead of refusing them")


def add_tenant_options(parser: argparse.ArgumentParser) -> None:
    """--tenant-pattern / --tenant-column: the database-per-tenant split (pipeline.tenants)."""
    parser.add_argument("--tenant-pattern", metavar="PATTERN",
                        help="split into one SQLite file per tenant, e.g. 'data/tenants/{tenant}.db' "
                             "(the rest of [tenants] comes from the config; --target is not used)")
    parser.add_argument("--tenant-column", metavar="COL", help="tenant column (default: [tenants] column, tenant_id)")
