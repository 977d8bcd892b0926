"""`pg2edge export`: a replica as a Turso database file or a Cloudflare D1 SQL script."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_target_option


def register(sub: Any) -> None:
    parser = add_command(
        sub, "export", help="export a replica for an edge platform: a clean SQLite file (turso) or an SQL script (d1)",
        example="pg2edge export --target shop.db --format d1 --output shop.sql && "
                "wrangler d1 execute shop --remote --file shop.sql",
        description="Export a replica for an edge platform. turso: a vacuumed SQLite file without pg2edge's "
                    "internal tables, for `turso db create NAME --from-file FILE`. d1: an SQL script for "
                    "`wrangler d1 execute DB --file FILE` (parents before children, statements under 100 KB).",
        handler=_run)
    add_target_option(parser, remote=False)
    parser.add_argument("--format", choices=("turso", "d1"), required=True, help="the edge platform")
    parser.add_argument("--output", metavar="PATH", required=True, help="the file to write")
    parser.add_argument("--force", action="store_true", help="replace PATH if it exists")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.exports import export_d1, export_turso

    export = export_turso if args.format == "turso" else export_d1
    result = export(args.target, args.output, overwrite=args.force)
    print(result.summary())
    return 0
