"""The Prefect flows against a remote target (real sqld): dual-write, validate and cutover phases over Hrana."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.edge import SqldServer

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pg2edge-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.slow
def test_dual_write_validate_and_cutover_flows_into_sqld(prefect_harness: None, shop_dsn: str, sqld: SqldServer,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pg2edge.config import Config
    from pg2edge.flows.phases import phase2_dual_write, phase3_validate, phase4_cutover
    from pg2edge.pipeline.remote import HranaClient, parse_target

    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))
    config = Config(source={"dsn": shop_dsn})
    result = phase2_dual_write(config=config, target=sqld.url, tables=["products", "categories"])
    assert result
    assert phase3_validate(config=config, target=sqld.url) is True
    with HranaClient(parse_target(sqld.url, env={})) as client:
        assert client.execute('SELECT count(*) > 0 FROM "products"').rows == [(1,)]
    monkeypatch.chdir(tmp_path)  # the backup of a URL target lands in the current directory
    changes = phase4_cutover(config=config, target=sqld.url)
    assert any("capturing replica writes" in c for c in changes), changes
    assert len(list(tmp_path.glob("*.backup-*.db"))) == 1
    with HranaClient(parse_target(sqld.url, env={})) as client:
        promoted = client.execute("SELECT value FROM _pg2edge_state WHERE scope = 'cutover' AND name = 'promote'")
        assert '"promoted": true' in promoted.rows[0][0]
