"""migrate's approval pause against a real local Prefect server: the run pauses, `flow resume --approve` finishes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pg2edge import sample, workload
from pg2edge.pgcluster import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(home: Path, api: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(home),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PG2EDGE_SOURCE", None)
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "prefect-home"
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=_env(home), stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not start in 120 s"
            time.sleep(0.5)
        yield api, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_migrate_pauses_for_approval_and_resume_finishes_it(prefect_server: tuple[str, Path], pg_dsn: str,
                                                             tmp_path: Path) -> None:
    api, home = prefect_server
    sample.install(pg_dsn)
    workload.run(pg_dsn, scale=0.2)
    target = tmp_path / "shop.db"
    out = open(tmp_path / "flow.log", "w")
    run = subprocess.Popen([sys.executable, "-m", "pg2edge", "flow", "run", "migrate", "--source", pg_dsn,
                            "--target", str(target)], env=_env(home, api), stdout=out, stderr=subprocess.STDOUT,
                           cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        paused: list[Any] = []
        while not paused:
            assert run.poll() is None, (tmp_path / "flow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "migrate did not pause in 240 s"
            time.sleep(1)
            paused = _post(api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}})
        run_id = paused[0]["id"]
        resumed = subprocess.run([sys.executable, "-m", "pg2edge", "flow", "resume", run_id, "--approve"],
                                 env=_env(home, api), capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert run.wait(timeout=240) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        out.close()
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as resp:
        assert json.loads(resp.read())["state"]["type"] == "COMPLETED"
    assert "recorded the cutover" in (tmp_path / "flow.log").read_text()


def test_flow_serve_registers_the_deployments_with_a_scheduled_validation(prefect_server: tuple[str, Path],
                                                                           pg_dsn: str, tmp_path: Path) -> None:
    api, home = prefect_server
    out = open(tmp_path / "serve.log", "w")
    secret_dsn = f"{pg_dsn} password=hunter2-never-stored"  # trust auth ignores it; the server must not keep it
    serve = subprocess.Popen([sys.executable, "-m", "pg2edge", "flow", "serve", "--source", secret_dsn,
                              "--target", str(tmp_path / "shop.db"), "--validate-every", "15m"],
                             env=_env(home, api), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        names: dict[str, Any] = {}
        while len(names) < 6:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"deployments not registered: {sorted(names)}"
            time.sleep(1)
            names = {d["name"]: d for d in _post(api, "/deployments/filter", {"limit": 50})}
        assert set(names) == {"pg2edge-phase1", "pg2edge-phase2", "pg2edge-phase3", "pg2edge-phase3-scheduled",
                              "pg2edge-phase4", "pg2edge-migrate"}
        schedules = names["pg2edge-phase3-scheduled"]["schedules"]
        assert schedules and schedules[0]["schedule"]["interval"] == 900
        assert not names["pg2edge-migrate"]["schedules"]
        assert "hunter2-never-stored" not in json.dumps(names)
        assert names["pg2edge-phase3"]["parameters"]["config"]["source"]["dsn"].startswith("user=")
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        out.close()
