"""The Prefect flows under one prefect_test_harness (ephemeral API): migrate end to end, artifacts, gates."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pg2edge-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flows") / "shop.db"


def _artifacts() -> dict[str, Any]:
    from prefect import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts()

    ordered = sorted(run_coro_as_sync(read()), key=lambda a: a.created)  # the latest version of each key wins
    return {a.key: a for a in ordered if a.key}


def test_migrate_runs_every_phase_and_publishes_artifacts(prefect_harness: None, shop_dsn: str,
                                                          replica: Path) -> None:
    from pg2edge.config import Config
    from pg2edge.flows.phases import migrate
    from pg2edge.pipeline import state
    from pg2edge.pipeline.sinks.sqlite import open_replica

    config = Config(source={"dsn": shop_dsn})
    changes = migrate(config=config, target=str(replica), auto_approve=True)
    assert any("recorded the cutover" in c for c in changes)
    db = open_replica(replica)
    try:
        assert state.read_record(db, "cutover", "promote")["promoted"] is True
        assert state.read_record(db, "cutover", "freeze")["frozen"] is True
        assert state.read_record(db, "validation", "last")["clean"] is True
        assert "products" in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    arts = _artifacts()
    assert {"candidates", "schema-findings", "validation", "cutover-checklist", "promote"} <= set(arts)
    assert "products" in arts["candidates"].data
    assert "ready to cut over" in arts["cutover-checklist"].data or "ready (with" in arts["cutover-checklist"].data
    assert "clean" in arts["validation"].data


def test_phase4_stops_at_a_failing_checklist_gate(prefect_harness: None, shop_dsn: str, replica: Path) -> None:
    from pg2edge.config import Config
    from pg2edge.flows.errors import GateFailed
    from pg2edge.flows.phases import phase4_cutover
    from pg2edge.pipeline.sinks.sqlite import open_replica

    db = open_replica(replica)
    with db:
        db.execute("DELETE FROM products WHERE rowid IN (SELECT rowid FROM products LIMIT 3)")
    db.close()
    with pytest.raises(GateFailed, match="row counts equal"):
        phase4_cutover(config=Config(source={"dsn": shop_dsn}), target=str(replica))
    assert "NOT ready: row counts equal failed" in _artifacts()["cutover-checklist"].data
