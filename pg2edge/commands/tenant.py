"""`pg2edge tenant list|delete`: the per-tenant SQLite files or libSQL databases of the database-per-tenant split."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command


def _pattern_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")
    parser.add_argument("--pattern", metavar="PATTERN",
                        help="tenant file pattern, e.g. 'data/tenants/{tenant}.db', or database URL pattern, e.g. "
                             "'libsql://{tenant}-myorg.turso.io' (default: [tenants] pattern)")
    parser.add_argument("--shared-path", metavar="FILE",
                        help="with a URL pattern: the hub file that records the tenant databases "
                             "(default: [tenants] shared_path)")


def register(sub: Any) -> None:
    parser = add_command(
        sub, "tenant", help="list or delete the per-tenant SQLite files or databases (database-per-tenant split)",
        description="Tenant files are written by `pg2edge snapshot|sync --tenant-pattern`; see docs/tenants.md.",
        example="pg2edge tenant list --pattern 'data/tenants/{tenant}.db'", handler=_usage)
    actions = parser.add_subparsers(dest="tenant_action", metavar="ACTION")
    lister = add_command(actions, "list", help="list tenant ids with their file and size (or database URL and status)",
                         example="pg2edge tenant list --config pg2edge.toml", handler=_list)
    _pattern_options(lister)
    deleter = add_command(actions, "delete", help="remove one tenant's file (stop the sync first) or drop its database "
                          "(its later changes are then named and not applied)",
                          example="pg2edge tenant delete acme --config pg2edge.toml --yes", handler=_delete)
    deleter.add_argument("tenant", metavar="ID", help="the tenant id (as stored in the tenant column)")
    deleter.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _pattern_options(deleter)


def _usage(args: argparse.Namespace) -> int:
    print("usage: pg2edge tenant {list,delete} ... (see pg2edge tenant --help)")
    return 2


def _tenants(args: argparse.Namespace) -> Any:
    from pg2edge.config import load_config

    return load_config(args.config, overrides={"tenants": {"pattern": args.pattern,
                                                           "shared_path": args.shared_path}}).tenants


def _list(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.tenants.admin import list_tenants
    from pg2edge.pipeline.tenants.ids import check_pattern, is_url_pattern

    tenants = _tenants(args)
    if is_url_pattern(tenants.pattern):
        from pg2edge.pipeline.tenants.remote import registry_of

        check_pattern(tenants.pattern)
        records = sorted(registry_of(tenants.shared_path).values(), key=lambda r: r["tenant"])
        for rec in records:
            print(f"{rec['tenant']}\t{rec['url']}\t{rec['status']}")
        print(f"{sum(r['status'] == 'created' for r in records)} tenant database(s)"
              f" ({sum(r['status'] == 'deleted' for r in records)} deleted)")
        return 0
    files = list_tenants(tenants.pattern)
    for tf in files.values():
        print(f"{tf.tenant}\t{tf.path}\t{tf.bytes}")
    print(f"{len(files)} tenant file(s)")
    return 0


def _confirm(args: argparse.Namespace, what: str) -> None:
    import sys

    from pg2edge.errors import ConfigError

    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"refusing to delete {what} without --yes (no terminal to confirm on)")
    if input(f"delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise ConfigError(f"not deleted: {what}")


def _delete(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.tenants.admin import delete_tenant
    from pg2edge.pipeline.tenants.ids import is_url_pattern

    tenants = _tenants(args)
    if is_url_pattern(tenants.pattern):
        return _delete_database(args, tenants)
    _confirm(args, f"tenant {args.tenant!r}'s file")
    for path in delete_tenant(tenants.pattern, args.tenant):
        print(f"removed {path}")
    return 0


def _delete_database(args: argparse.Namespace, tenants: Any) -> int:
    from pathlib import Path

    from pg2edge.errors import ConfigError
    from pg2edge.pipeline.sinks.sqlite import open_replica
    from pg2edge.pipeline.tenants.remote import RemoteTenants, registry_of

    if not Path(tenants.shared_path).is_file():
        raise ConfigError(f"no hub file {tenants.shared_path}: nothing records tenant databases of {tenants.pattern}")
    remote = RemoteTenants(tenants)
    try:
        label = remote.label(args.tenant)
        rec = registry_of(tenants.shared_path).get(label)
        if rec is None or rec.get("tenant") != args.tenant:
            raise ConfigError(f"no database is recorded for tenant {args.tenant!r} in {tenants.shared_path}")
        _confirm(args, f"tenant {args.tenant!r}'s database {rec['url']}")
        hub = open_replica(tenants.shared_path)
        try:
            url = remote.delete(hub, args.tenant)
        finally:
            hub.close()
    finally:
        remote.close()
    print(f"dropped {url} (tenant {args.tenant!r}); its later changes are not applied")
    return 0
