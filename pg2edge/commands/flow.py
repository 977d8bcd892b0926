"""`pg2edge flow ACTION`: run the migration as Prefect flows, resume a paused run, serve deployments.

Prefect is imported only inside the handlers: every other command starts without it.
"""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command

FLOW_NAMES = ("phase1_analyze", "phase2_dual_write", "phase3_validate", "phase4_cutover", "migrate")


def register(sub: Any) -> None:
    parser = add_command(
        sub, "flow", help="run the phased migration as Prefect flows (ephemeral, or a server via PREFECT_API_URL)",
        example="pg2edge flow run migrate --config pg2edge.toml --target shop.db --auto-approve",
        handler=_no_action)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for add in (_add_run, _add_resume, _add_serve):
        add(actions)


def _no_action(args: argparse.Namespace) -> int:
    return 2


def _config_and_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")
    parser.add_argument("--source", metavar="DSN", help="source PostgreSQL (overrides [source] dsn)")
    parser.add_argument("--target", metavar="FILE.db", help="the SQLite replica (default: [target] path)")


def _load(args: argparse.Namespace) -> Any:
    from pg2edge.config import load_config

    return load_config(args.config, overrides={"source": {"dsn": args.source}, "target": {"path": args.target}})


def _add_run(actions: Any) -> None:
    parser = add_command(
        actions, "run", help="run one flow now (migrate runs all four phases with gates between them)",
        example="pg2edge flow run migrate --config pg2edge.toml --target shop.db --auto-approve",
        handler=_run)
    parser.add_argument("name", choices=FLOW_NAMES, help="the flow")
    _config_and_target(parser)
    parser.add_argument("--auto-approve", action="store_true",
                        help="migrate: do not pause for approval before the cutover")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.flows.phases import run_flow

    config = _load(args)
    config.require_source()
    target = config.require_target() if args.name != "phase1_analyze" else config.target.path
    result = run_flow(args.name, config=config, target=target, auto_approve=args.auto_approve)
    print(f"flow {args.name} finished: {result}")
    return 0


def _add_resume(actions: Any) -> None:
    parser = add_command(
        actions, "resume", help="answer the approval pause of a migrate run (on a Prefect server)",
        example="pg2edge flow resume 0b1c...-uuid --approve", handler=_resume)
    parser.add_argument("run_id", metavar="RUN_ID", help="the paused flow run's id")
    answer = parser.add_mutually_exclusive_group(required=True)
    answer.add_argument("--approve", action="store_true", help="cut over")
    answer.add_argument("--reject", action="store_true", help="stop the migration before the cutover")


def _resume(args: argparse.Namespace) -> int:
    from uuid import UUID

    from pg2edge.errors import ConfigError
    from pg2edge.flows.deploy import require_server

    require_server()
    try:
        run_id = UUID(args.run_id)
    except ValueError:
        raise ConfigError(f"not a flow run id: {args.run_id!r}") from None
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run_id, run_input={"approve": bool(args.approve)})
    print(f"flow run {run_id} resumed: {'approved' if args.approve else 'rejected'}")
    return 0


def _add_serve(actions: Any) -> None:
    parser = add_command(
        actions, "serve", help="register the flows as deployments on a Prefect server (validation every 15 min)",
        example="PREFECT_API_URL=http://127.0.0.1:4200/api pg2edge flow serve --config pg2edge.toml --target shop.db",
        handler=_serve)
    _config_and_target(parser)
    parser.add_argument("--validate-every", default="15m", metavar="DURATION",
                        help="schedule of the phase3_validate deployment (default 15m)")


def _serve(args: argparse.Namespace) -> int:
    from pg2edge.config import parse_duration
    from pg2edge.flows.deploy import require_server, serve

    require_server()
    config = _load(args)
    serve(config, config.require_target(), validate_every=int(parse_duration(args.validate_every)))
    return 0
