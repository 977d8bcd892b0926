"""`pg2edge export`: a replica as a Turso database file or a Cloudflare D1 SQL script; or the D1 Worker."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_target_option, resolve_target
from pg2edge.errors import ConfigError


def register(sub: Any) -> None:
    parser = add_command(
        sub, "export", help="export a replica for an edge platform: a clean SQLite file (turso) or an SQL script (d1)",
        example="pg2edge export --target shop.db --format d1 --output shop.sql && "
                "wrangler d1 execute shop --remote --file shop.sql\n"
                "  pg2edge export d1-worker ./d1-worker --database shop",
        description="Export a replica (a file, or a remote libSQL/D1 replica, read into a local file first) "
                    "for an edge platform. turso: a vacuumed SQLite file without pg2edge's "
                    "internal tables, for `turso db create NAME --from-file FILE`. d1: an SQL script for "
                    "`wrangler d1 execute DB --file FILE` (parents before children, statements under 100 KB). "
                    "`export d1-worker DIR` writes the pg2edge D1 Worker (index.js, wrangler.toml with the D1 "
                    "binding DB, and .dev.vars holding the local secret PG2EDGE_TOKEN: the value of "
                    "$PG2EDGE_TARGET_AUTH_TOKEN, else a random one) for live sync with --target d1+https://HOST.",
        handler=_run)
    parser.add_argument("what", nargs="?", choices=("d1-worker",), help="d1-worker: write the D1 Worker project")
    parser.add_argument("dir", nargs="?", metavar="DIR", help="with d1-worker: the directory to write")
    parser.add_argument("--database", metavar="NAME", default="pg2edge",
                        help="with d1-worker: the D1 database name in wrangler.toml (default pg2edge)")
    add_target_option(parser)
    parser.add_argument("--format", choices=("turso", "d1"), help="the edge platform (a replica export)")
    parser.add_argument("--output", metavar="PATH", help="the file to write (a replica export)")
    parser.add_argument("--force", action="store_true", help="replace PATH (or the Worker files) if it exists")


def _run(args: argparse.Namespace) -> int:
    if args.what == "d1-worker":
        from pg2edge.pipeline.d1.project import export_worker

        if not args.dir:
            raise ConfigError("export d1-worker needs the directory to write, e.g. pg2edge export d1-worker ./worker")
        print(export_worker(args.dir, database=args.database, overwrite=args.force).summary())
        return 0
    if not args.format or not args.output:
        raise ConfigError("export needs --format turso|d1 and --output PATH (or: export d1-worker DIR)")
    from pg2edge.pipeline.exports import export_d1, export_turso
    from pg2edge.pipeline.remote import is_remote

    export = export_turso if args.format == "turso" else export_d1
    target = resolve_target(args)
    if not is_remote(target):
        print(export(target, args.output, overwrite=args.force).summary())
        return 0
    import tempfile
    from pathlib import Path

    from pg2edge.pipeline.cutover.backup import copy_remote

    # a remote replica is read into a local file first (the copy `cutover backup` takes), then exported
    with tempfile.TemporaryDirectory(prefix="pg2edge-export-") as tmp:
        local = Path(tmp) / "replica.db"
        copy_remote(target, local)
        result = export(local, args.output, overwrite=args.force)
    print(f"{result.summary()} from {target}")
    return 0
