"""`pg2edge analyze`: rank tables by read/write ratio, name blockers, recommend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pg2edge.commands import add_command, add_output_options, add_source_options


def register(sub: Any) -> None:
    parser = add_command(
        sub, "analyze", help="rank tables by read/write ratio and name what blocks a move (phase 1)",
        description="Rank tables by read/write ratio from pg_stat_user_tables (reads = seq_scan + idx_scan, "
                    "writes = inserted + updated + deleted rows), name what blocks a move and recommend. "
                    "JSON 'ratio' is a number, \"inf\" for tables with reads and no writes, or null without traffic.",
        example="pg2edge analyze --source postgresql://app@db/shop --window 5m --format html --output report.html",
        handler=_run)
    add_source_options(parser)
    parser.add_argument("--window", metavar="DURATION",
                        help="sample twice, DURATION apart (e.g. 30s, 5m), and rank by the traffic in between")
    parser.add_argument("--target-profile", choices=("sqlite", "turso", "d1", "litefs"),
                        help="check sizes against this target's limits (default: sqlite)")
    add_output_options(parser, ("table", "json", "markdown", "html"))


def _run(args: argparse.Namespace) -> int:
    from pg2edge.analyzers import analyze, render
    from pg2edge.config import load_config

    config = load_config(args.config, overrides={
        "source": {"dsn": args.source},
        "analyze": {"window": args.window, "target_profile": args.target_profile}})
    report = analyze(config.require_source(), config=config.analyze)
    if args.format == "table" and not args.output:
        from rich.console import Console

        from pg2edge.analyzers.report import print_report

        print_report(report, Console())
        return 0
    text = render(report, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.format} report to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
