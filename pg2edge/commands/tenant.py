"""`pg2edge tenant list|delete`: the per-tenant SQLite files of the database-per-tenant split."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command


def _pattern_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")
    parser.add_argument("--pattern", metavar="PATTERN",
                        help="tenant file pattern, e.g. 'data/tenants/{tenant}.db' (default: [tenants] pattern)")


def register(sub: Any) -> None:
    parser = add_command(
        sub, "tenant", help="list or delete the per-tenant SQLite files (database-per-tenant split)",
        description="Tenant files are written by `pg2edge snapshot|sync --tenant-pattern`; see docs/tenants.md.",
        example="pg2edge tenant list --pattern 'data/tenants/{tenant}.db'", handler=_usage)
    actions = parser.add_subparsers(dest="tenant_action", metavar="ACTION")
    lister = add_command(actions, "list", help="list tenant ids with their file and size",
                         example="pg2edge tenant list --config pg2edge.toml", handler=_list)
    _pattern_options(lister)
    deleter = add_command(actions, "delete", help="remove one tenant's file (stop the sync first)",
                          example="pg2edge tenant delete acme --config pg2edge.toml --yes", handler=_delete)
    deleter.add_argument("tenant", metavar="ID", help="the tenant id (as stored in the tenant column)")
    deleter.add_argument("--yes", action="store_true", help="really remove the file (required)")
    _pattern_options(deleter)


def _usage(args: argparse.Namespace) -> int:
    print("usage: pg2edge tenant {list,delete} ... (see pg2edge tenant --help)")
    return 2


def _pattern(args: argparse.Namespace) -> str:
    from pg2edge.config import load_config

    return load_config(args.config, overrides={"tenants": {"pattern": args.pattern}}).tenants.pattern


def _list(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.tenants.admin import list_tenants

    files = list_tenants(_pattern(args))
    for tf in files.values():
        print(f"{tf.tenant}\t{tf.path}\t{tf.bytes}")
    print(f"{len(files)} tenant file(s)")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from pg2edge.errors import ConfigError
    from pg2edge.pipeline.tenants.admin import delete_tenant

    if not args.yes:
        raise ConfigError(f"refusing to delete tenant {args.tenant!r} without --yes")
    for path in delete_tenant(_pattern(args), args.tenant):
        print(f"removed {path}")
    return 0
