"""Prefect tasks: each calls ONE library function (and publishes its Markdown artifact). No business logic here.

Only I/O tasks that can simply be run again retry (reads of the source, the
snapshot and sync, which resume from the replica's own state); the actions
that change the source or the replica (freeze, backup, promote) do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from pg2edge.config import Config

IO_RETRIES = {"retries": 2, "retry_delay_seconds": 2}


def _say(line: str) -> None:
    get_run_logger().info("%s", line)


def _key(name: str) -> str:
    return name.replace("_", "-")  # artifact keys: lowercase letters, numbers, dashes


@task(name="analyze", **IO_RETRIES)
def analyze_task(config: Config) -> Any:
    from pg2edge.analyzers import analyze, render

    report = analyze(config.require_source(), config=config.analyze)
    create_markdown_artifact(render(report, "markdown"), key=_key("candidates"),
                             description="Phase 1: tables ranked by read/write ratio")
    return report


@task(name="candidates")
def candidates_task(report: Any) -> list[str]:
    from pg2edge.analyzers.verdicts import MOVABLE

    return [t.table for t in report.tables if t.verdict in MOVABLE and not t.blockers]


@task(name="translate schema", **IO_RETRIES)
def translate_task(config: Config, tables: list[str]) -> Any:
    from pg2edge.translators.render import translate_schema

    names = [t.split(".", 1)[-1] for t in tables]
    result = translate_schema(config.require_source(), schemas=config.analyze.schemas, tables=names,
                              options=config.translate)
    lines = [f"## Schema translation: {result.statements} statement(s), {len(result.findings)} finding(s)", ""]
    lines += [f"- `{f.level}` **{f.code}** {f.object}: {f.message}" for f in result.findings] or ["- no findings"]
    lines += ["", "```sql", result.text.rstrip(), "```"]
    create_markdown_artifact("\n".join(lines) + "\n", key=_key("schema-findings"),
                             description="Phase 2: PostgreSQL -> SQLite schema findings")
    return result


def _resolved(config: Config, target: str) -> Any:
    """A task's target as every command resolves it: a URL with its token ($PG2EDGE_TARGET_AUTH_TOKEN,
    $TURSO_AUTH_TOKEN, [target] auth_token). Resolved inside the task, so no token is a flow parameter."""
    from pg2edge.pipeline.remote import resolve

    return resolve(target, config_token=config.target.token())


@task(name="snapshot", **IO_RETRIES)
def snapshot_task(config: Config, target: str, tables: list[str]) -> Any:
    from pg2edge.pipeline.remote import is_remote
    from pg2edge.pipeline.sources.snapshot import run_snapshot

    if is_remote(target):  # a libSQL/Turso URL: staged locally, then uploaded (pipeline.sinks.libsql)
        from pg2edge.pipeline.remote import HranaClient, parse_target
        from pg2edge.pipeline.sinks.libsql import snapshot_into_remote

        remote = parse_target(target, config_token=config.target.token())
        if remote.kind == "d1":  # the pg2edge D1 Worker: staged locally, then loaded (pipeline.d1)
            from pg2edge.pipeline.d1.client import D1Client
            from pg2edge.pipeline.d1.daemon import snapshot_into_d1

            with D1Client(remote) as d1:
                return snapshot_into_d1(dsn=config.require_source(), client=d1, say=_say,
                                        tables=",".join(tables), options=config.translate)
        with HranaClient(remote) as client:
            return snapshot_into_remote(dsn=config.require_source(), target=remote, client=client, say=_say,
                                        tables=",".join(tables), options=config.translate,
                                        path=config.target.snapshot_path)
    return run_snapshot(dsn=config.require_source(), target=target, tables=",".join(tables),
                        options=config.translate, say=_say)


@task(name="sync until caught up", **IO_RETRIES)
def sync_task(config: Config, target: str) -> Any:
    from pg2edge.pipeline.daemon import run_sync

    return run_sync(dsn=config.require_source(), target=_resolved(config, target), options=config.translate,
                    until_caught_up=True, say=_say)


@task(name="validate", **IO_RETRIES)
def validate_task(config: Config, target: str, mode: str = "full") -> Any:
    from pg2edge.validators import render, validate

    report = validate(config.require_source(), _resolved(config, target), mode=mode, options=config.translate)
    create_markdown_artifact(render(report, "markdown"), key=_key("validation"),
                             description="Phase 3: replica vs source at a known LSN")
    return report


@task(name="cutover checklist", **IO_RETRIES)
def checklist_task(config: Config, target: str) -> Any:
    from pg2edge.pipeline.cutover.checklist import render
    from pg2edge.pipeline.cutover.gates import run_checklist

    checklist = run_checklist(config.require_source(), _resolved(config, target), thresholds=config.cutover,
                              options=config.translate)
    create_markdown_artifact(render(checklist, "markdown"), key=_key("cutover-checklist"),
                             description="Phase 4: the cutover checklist")
    return checklist


@task(name="freeze")
def freeze_task(config: Config, target: str) -> Any:
    from pg2edge.pipeline.cutover.freeze import freeze, published_tables

    dsn, replica = config.require_source(), _resolved(config, target)
    return freeze(dsn, published_tables(dsn, replica=replica), replica=replica)


@task(name="drain", **IO_RETRIES)
def drain_task(config: Config, target: str) -> Any:
    from pg2edge.pipeline.cutover.actions import drain

    return drain(config.require_source(), _resolved(config, target))


@task(name="backup")
def backup_task(config: Config, target: str) -> Path:
    from pg2edge.pipeline.cutover.backup import backup_replica

    return backup_replica(_resolved(config, target))


@task(name="promote")
def promote_task(config: Config, target: str) -> Any:
    from pg2edge.pipeline.cutover.actions import promote

    result = promote(config.require_source(), _resolved(config, target), take_backup=False)
    lines = ["## Cutover: promoted", ""] + [f"- {c}" for c in result.changes] + ["", f"Undo: `{result.undo}`"]
    create_markdown_artifact("\n".join(lines) + "\n", key=_key("promote"), description="Phase 4: what promote changed")
    return result
