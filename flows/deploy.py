"""``pg2edge flow serve``: the deployments of the migration flows against a real Prefect server."""

from __future__ import annotations

import os
from typing import Any

from pg2edge.config import Config
from pg2edge.flows.errors import NoServer
from pg2edge.flows.secrets import parameters_config

VALIDATE_EVERY_SECONDS = 15 * 60


def require_server() -> str:
    """The Prefect API URL; NoServer when ``PREFECT_API_URL`` is not set (serving needs a real server)."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        raise NoServer("`pg2edge flow serve` registers deployments on a Prefect server: start one "
                       "(`prefect server start`) and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    return url


def deployments(config: Config, target: str, *, validate_every: int = VALIDATE_EVERY_SECONDS) -> list[Any]:
    """One deployment per flow; ``phase3_validate`` also runs every ``validate_every`` seconds."""
    from pg2edge.flows.phases import migrate, phase1_analyze, phase2_dual_write, phase3_validate, phase4_cutover

    params = {"config": parameters_config(config).model_dump(mode="json"), "target": target}
    return [
        phase1_analyze.to_deployment(name="pg2edge-phase1", parameters={"config": params["config"]}),
        phase2_dual_write.to_deployment(name="pg2edge-phase2", parameters=params),
        phase3_validate.to_deployment(name="pg2edge-phase3", parameters=params),
        phase3_validate.to_deployment(name="pg2edge-phase3-scheduled", parameters=params, interval=validate_every),
        phase4_cutover.to_deployment(name="pg2edge-phase4", parameters=params),
        migrate.to_deployment(name="pg2edge-migrate", parameters={**params, "auto_approve": False}),
    ]


def serve(config: Config, target: str, *, validate_every: int = VALIDATE_EVERY_SECONDS) -> None:
    """Register the deployments and serve them until interrupted.

    The deployments store the source DSN without its password; the runs, which
    this process starts, get it from PGPASSWORD (flows/secrets.py).
    """
    require_server()
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(config, target, validate_every=validate_every))
