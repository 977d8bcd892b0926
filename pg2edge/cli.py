"""The ``pg2edge`` command line: one sub-command per job, errors mapped to exit codes.

Each command module in :mod:`pg2edge.commands` registers its parser and a
handler that opens what it needs and calls one library function. Library
errors (:class:`pg2edge.errors.Pg2EdgeError`) become a one-line message on
stderr and a non-zero exit here, and only here; anything else that escapes
(an apsw, psycopg or OS error) is also one line naming the object, exit 2
(:mod:`pg2edge.boundary`); ``-v`` adds the traceback to the log.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pg2edge import __version__
from pg2edge.boundary import describe_error, one_line
from pg2edge.errors import Pg2EdgeError

# The order `pg2edge --help` lists commands in; other modules follow alphabetically.
COMMAND_ORDER = ("demo", "analyze", "translate", "snapshot", "sync", "status", "wait", "teardown",
                 "publish", "dlq", "tenant", "validate", "cutover", "export", "flow", "sample")


def command_modules() -> list[str]:
    """Every module of pg2edge.commands, in help order."""
    import pkgutil

    from pg2edge import commands

    names = {m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    ordered = [n for n in COMMAND_ORDER if n in names]
    return ordered + sorted(names - set(ordered))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pg2edge",
        description="Move the read-heavy part of PostgreSQL to edge SQLite and keep it in sync.",
        epilog="Example:\n  pg2edge analyze --source postgresql://app@db/shop --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pg2edge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        module = importlib.import_module(f"pg2edge.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except Pg2EdgeError as exc:
        logging.getLogger("pg2edge").debug("error", exc_info=True)
        print(f"pg2edge {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pg2edge {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything that escaped the library's own errors: still one line, exit 2
        logging.getLogger("pg2edge").info("unexpected error", exc_info=True)
        print(f"pg2edge {args.command}: error: {one_line(describe_error(exc, args))}", file=sys.stderr)
        return 2
