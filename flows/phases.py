"""The phased migration as Prefect flows: ``phase1_analyze`` .. ``phase4_cutover`` and ``migrate``.

Parameters are the typed config model plus a few typed extras. Ephemeral
Prefect by default; a real server when ``PREFECT_API_URL`` is set. The gates
between phases (no candidates; validation not clean; a checklist FAIL) stop
``migrate`` with :class:`flows.errors.GateFailed`, which fails the flow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from pg2edge.config import Config
from pg2edge.flows import tasks
from pg2edge.flows.errors import GateFailed, NotApproved

APPROVAL_TIMEOUT = 24 * 3600


class Approval(RunInput):
    """The answer to the pause before the cutover: approve (true) or reject (false)."""

    approve: bool


@flow(name="phase1-analyze")
def phase1_analyze(config: Config) -> list[str]:
    """Rank the tables; returns the candidates (movable, no blockers)."""
    report = tasks.analyze_task(config)
    return tasks.candidates_task(report)


@flow(name="phase2-dual-write")
def phase2_dual_write(config: Config, target: str, tables: list[str] | None = None) -> dict[str, Any]:
    """Translate the schema, snapshot ``tables`` (default: [tables] of the config, else the candidates), sync."""
    tables = tables or list(config.tables) or phase1_analyze(config)
    if not tables:
        raise GateFailed("gate 'candidates' failed: no table is a candidate to move (see the candidates artifact)")
    tasks.translate_task(config, tables)
    snap = tasks.snapshot_task(config, target, tables)
    synced = tasks.sync_task(config, target)
    return {"tables": tables, "snapshot_rows": snap.rows, "transactions": synced.transactions,
            "rows": synced.rows}


@flow(name="phase3-validate")
def phase3_validate(config: Config, target: str, mode: str = "full") -> bool:
    """Validate the replica against the source; returns whether it is clean."""
    return bool(tasks.validate_task(config, target, mode=mode).clean)


@flow(name="phase4-cutover")
def phase4_cutover(config: Config, target: str) -> list[str]:
    """Checklist -> freeze -> drain -> backup -> promote; a checklist FAIL stops before the freeze."""
    checklist = tasks.checklist_task(config, target)
    if not checklist.ok:
        raise GateFailed("gate 'cutover checklist' failed: " + "; ".join(
            f"{g.name} ({g.detail or g.measured})" for g in checklist.failed))
    tasks.freeze_task(config, target)
    tasks.drain_task(config, target)
    tasks.backup_task(config, target)
    return tasks.promote_task(config, target).changes


@flow(name="migrate")
def migrate(config: Config, target: str, auto_approve: bool = False) -> list[str]:
    """Every phase in order, with a gate between each and a pause for approval before the cutover."""
    log = get_run_logger()
    candidates = phase1_analyze(config)
    if not candidates:
        raise GateFailed("gate 'candidates' failed: no table is a candidate to move (see the candidates artifact)")
    phase2_dual_write(config, target, tables=list(config.tables) or candidates)
    if not phase3_validate(config, target):
        raise GateFailed("gate 'validation' failed: the replica differs from the source "
                         "(see the validation artifact; `pg2edge validate --repair`)")
    if not auto_approve:
        log.info("waiting for approval of the cutover: pg2edge flow resume <run id> --approve|--reject")
        answer = pause_flow_run(wait_for_input=Approval, timeout=APPROVAL_TIMEOUT)
        if answer is None or not answer.approve:
            raise NotApproved("the cutover was rejected at the approval pause; the replica keeps syncing "
                              "nothing was frozen")
    return phase4_cutover(config, target)


FLOWS = {"phase1_analyze": phase1_analyze, "phase2_dual_write": phase2_dual_write,
         "phase3_validate": phase3_validate, "phase4_cutover": phase4_cutover, "migrate": migrate}


def run_flow(name: str, *, config: Config, target: str | None, auto_approve: bool = False) -> Any:
    """Run one flow by its name (``pg2edge flow run NAME``); the DSN password stays out of the parameters."""
    from pg2edge.flows.secrets import parameters_config

    config = parameters_config(config)
    fn = FLOWS[name]
    if name == "phase1_analyze":
        return fn(config=config)
    if name == "migrate":
        return fn(config=config, target=target, auto_approve=auto_approve)
    return fn(config=config, target=target)
