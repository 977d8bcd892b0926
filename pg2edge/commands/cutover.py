"""`pg2edge cutover ACTION`: the cutover actions, one sub-command each.

Each action is one ``_add_<action>(actions)`` function that registers its
parser and handler; adding an action (check, drain, promote, rollback) is one
more such function listed in ``ACTIONS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pg2edge.commands import add_command, add_source_options, add_target_option, resolve_target


def register(sub: Any) -> None:
    parser = add_command(
        sub, "cutover", help="cut over to the edge replica: freeze writes on the source, back up, undo",
        example="pg2edge cutover freeze --source postgresql://app@db/shop --target shop.db",
        handler=_no_action)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for add in ACTIONS:
        add(actions)


def _no_action(args: argparse.Namespace) -> int:  # argparse requires an ACTION before this can run
    return 2


def _source_and_target(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    add_target_option(parser)


def _source(args: argparse.Namespace) -> str:
    from pg2edge.config import load_config

    return load_config(args.config, overrides={"source": {"dsn": args.source}}).require_source()


def _tables(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def _print_changes(result: Any, *, nothing: str) -> None:
    if not result.changes:
        print(nothing)
        return
    for change in result.changes:
        print(f"changed: {change.description}")
    print(f"WAL LSN after the change: {result.lsn}")
    print("undo SQL (run on the source, in this order):")
    for change in reversed(result.changes):
        print(f"  {change.undo_sql};")


# -- freeze ---------------------------------------------------------------------------
def _add_freeze(actions: Any) -> None:
    parser = add_command(
        actions, "freeze", help="make the moved tables read-only on the source (a trigger refuses writes)",
        example="pg2edge cutover freeze --source postgresql://app@db/shop --target shop.db --tables products",
        handler=_freeze)
    _source_and_target(parser)
    parser.add_argument("--tables", metavar="LIST",
                        help="comma-separated schema.table names (default: the tables the replica's publication "
                             "publishes)")


def _freeze(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.freeze import freeze, published_tables

    dsn, target = _source(args), resolve_target(args)
    tables = _tables(args.tables) or published_tables(dsn, replica=target)
    result = freeze(dsn, tables, replica=target)
    _print_changes(result, nothing=f"already frozen: {', '.join(result.tables)}; nothing changed")
    print("undo: pg2edge cutover unfreeze (or pg2edge cutover rollback)")
    return 0


# -- unfreeze -------------------------------------------------------------------------
def _add_unfreeze(actions: Any) -> None:
    parser = add_command(
        actions, "unfreeze", help="allow writes again on tables a freeze made read-only",
        example="pg2edge cutover unfreeze --source postgresql://app@db/shop --target shop.db",
        handler=_unfreeze)
    _source_and_target(parser)
    parser.add_argument("--tables", metavar="LIST",
                        help="comma-separated schema.table names (default: the tables this replica froze)")


def _unfreeze(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.freeze import unfreeze

    result = unfreeze(_source(args), replica=resolve_target(args), tables=_tables(args.tables))
    _print_changes(result, nothing="no table is frozen; nothing changed")
    if result.changes:
        print("undo: pg2edge cutover freeze")
    return 0


# -- backup ---------------------------------------------------------------------------
def _add_backup(actions: Any) -> None:
    parser = add_command(
        actions, "backup", help="copy the replica (a file, or a remote libSQL/D1 database) to a local backup file "
                                "while it stays online",
        example="pg2edge cutover backup --target shop.db --output /backups/shop-before-cutover.db",
        handler=_backup)
    add_target_option(parser)
    parser.add_argument("--output", metavar="FILE",
                        help="backup file (default: <target>.backup-<UTC timestamp>.db next to the replica; for a "
                             "URL, <host>.backup-<UTC timestamp>.db in the current directory)")
    # accepted for symmetry with the other actions; a backup never touches the source
    parser.add_argument("--source", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help=argparse.SUPPRESS)


def _backup(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.backup import backup_replica, restore_hint

    target = resolve_target(args)
    out = backup_replica(target, args.output)
    print(f"backed up {target} to {out}")
    print(f"undo: delete {out}; restore: {restore_hint(target, out)}")
    return 0


# -- check ----------------------------------------------------------------------------
def _add_check(actions: Any) -> None:
    parser = add_command(
        actions, "check", help="run the cutover checklist (lag, queues, validation, drift, counts, sequences, ...)",
        description="Exits 1 when any gate FAILs; thresholds come from the [cutover] section of the config.",
        example="pg2edge cutover check --source postgresql://app@db/shop --target shop.db --format json",
        handler=_check)
    _source_and_target(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")


def _check(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.pipeline.cutover.checklist import render
    from pg2edge.pipeline.cutover.gates import run_checklist

    config = load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})
    checklist = run_checklist(config.require_source(), resolve_target(args), thresholds=config.cutover,
                              options=config.translate)
    print(render(checklist, args.format))
    return 0 if checklist.ok else 1


def _print_action(result: Any) -> None:
    for change in result.changes:
        print(f"changed: {change}")
    if not result.changes:
        print(f"{result.action}: nothing to do; nothing changed")
    print(f"undo: {result.undo}")


# -- drain ----------------------------------------------------------------------------
def _add_drain(actions: Any) -> None:
    parser = add_command(
        actions, "drain", help="wait until the replica has applied everything up to the freeze",
        example="pg2edge cutover drain --source postgresql://app@db/shop --target shop.db --timeout 120",
        handler=_drain)
    _source_and_target(parser)
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="give up after (default 60)")


def _drain(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.actions import drain

    _print_action(drain(_source(args), resolve_target(args), timeout=args.timeout))
    return 0


# -- promote --------------------------------------------------------------------------
def _add_promote(actions: Any) -> None:
    parser = add_command(
        actions, "promote", help="stop the sync, back up, capture replica writes, record the cutover",
        example="pg2edge cutover promote --source postgresql://app@db/shop --target shop.db",
        handler=_promote)
    _source_and_target(parser)
    parser.add_argument("--drop-slot", action="store_true",
                        help="also drop the replication slot and publication on the source (no way back by "
                             "streaming afterwards)")
    parser.add_argument("--backup", metavar="FILE", help="backup file (default next to the replica)")


def _promote(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.actions import promote

    _print_action(promote(_source(args), resolve_target(args), drop_slot=args.drop_slot, backup=args.backup))
    return 0


# -- rollback -------------------------------------------------------------------------
def _add_rollback(actions: Any) -> None:
    parser = add_command(
        actions, "rollback", help="unfreeze the source and send writes the replica took since promote back",
        example="pg2edge cutover rollback --source postgresql://app@db/shop --target shop.db",
        handler=_rollback)
    _source_and_target(parser)


def _rollback(args: argparse.Namespace) -> int:
    from pg2edge.pipeline.cutover.actions import rollback

    _print_action(rollback(_source(args), resolve_target(args)))
    return 0


ACTIONS: list[Callable[[Any], None]] = [_add_check, _add_freeze, _add_drain, _add_backup, _add_promote,
                                        _add_rollback, _add_unfreeze]
