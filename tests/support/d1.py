"""A real local Cloudflare D1: the exported pg2edge Worker under ``wrangler dev --local`` (workerd).

wrangler 4.86.0 (the last on Node 20) comes from tests/node (``npm ci`` in .ci/run).
Everything runs offline: metrics, error reports, the update check (banner) and
miniflare's ``Request.cf`` download are switched off. Checks read D1 back
directly, from the SQLite file under ``STATE/v3/d1/`` or with
``wrangler d1 execute --local --persist-to STATE``, not only through the Worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import apsw

from pg2edge.pgcluster import free_port
from pg2edge.pipeline.d1.project import export_worker

REPO = Path(__file__).resolve().parents[2]
WRANGLER = REPO / "tests" / "node" / "node_modules" / ".bin" / "wrangler"
DATABASE = "pg2edge-test"
OWN: Any = "\x00own-secret"  # post(): send the Worker's own secret


def wrangler_binary() -> Path | None:
    return WRANGLER if WRANGLER.exists() else None


def wrangler_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "PG2EDGE_TARGET"))}
    env.update({"WRANGLER_SEND_METRICS": "false", "WRANGLER_SEND_ERROR_REPORTS": "false",
                "WRANGLER_HIDE_BANNER": "true", "CLOUDFLARE_CF_FETCH_ENABLED": "false", "CI": "1",
                "NO_COLOR": "1", "XDG_CONFIG_HOME": str(home / "xdg")})
    return env


class LocalD1:
    """The pg2edge Worker on a free loopback port with a D1 persisted under ``state``."""

    def __init__(self, root: Path, *, token: str = "test-secret-d1", database: str = DATABASE) -> None:
        binary = wrangler_binary()
        if binary is None:
            raise RuntimeError("wrangler is not installed: cd tests/node && npm ci")
        self.binary = binary
        self.root = root
        self.project = root / "worker"
        self.state = root / "state"
        self.token = token
        self.database = database
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "wrangler-dev.log"
        export_worker(self.project, database=database, env={"PG2EDGE_TARGET_AUTH_TOKEN": token}, overwrite=True)

    @property
    def url(self) -> str:
        """The pg2edge target URL."""
        return f"d1+http://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> LocalD1:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "dev", "--local", "--ip", "127.0.0.1", "--port", str(self.port),
                 "--persist-to", str(self.state), "--show-interactive-dev-session=false"],
                cwd=self.project, env=wrangler_env(self.root), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)  # its own process group: stop() ends wrangler and workerd together
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wrangler dev exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            status, _ = self.post("/v1/query", {"sql": "SELECT 1"}, token=None)
            if status == 401:  # the Worker answers (and refuses a request without the secret)
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"wrangler dev did not answer on {self.http} within {timeout}s: "
                           f"{self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start again on the same port and state (a Worker restart mid-stream)."""
        self.stop()
        self.start()

    # -- requests to the Worker (raw HTTP, as any client would send them) ----------------
    def post(self, path: str, body: Any, *, token: str | None = OWN, raw: bytes | None = None) -> tuple[int, Any]:
        """POST JSON with ``Authorization: Bearer TOKEN`` (default: the Worker's secret; None: no header)."""
        headers = {"Content-Type": "application/json"}
        secret = self.token if token is OWN else token
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, text
        except (urllib.error.URLError, ConnectionError):
            return 0, None

    # -- reading D1 directly ---------------------------------------------------------------
    def sqlite_file(self) -> Path:
        files = [p for p in (self.state / "v3" / "d1").rglob("*.sqlite") if p.name != "metadata.sqlite"]
        if len(files) != 1:
            raise AssertionError(f"expected one D1 database file under {self.state}, found {files}")
        return files[0]

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows straight from the D1 SQLite file (read-only; workerd keeps writing it)."""
        conn = apsw.Connection(str(self.sqlite_file()), flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(5000)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def wrangler_query(self, sql: str) -> list[dict[str, Any]]:
        """Rows through ``wrangler d1 execute --local --persist-to STATE --json``."""
        proc = subprocess.run(
            [str(self.binary), "d1", "execute", self.database, "--local", "--persist-to", str(self.state),
             "--command", sql, "--json"], cwd=self.project, env=wrangler_env(self.root), capture_output=True,
            text=True, timeout=120, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise AssertionError(f"wrangler d1 execute failed: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
        out = proc.stdout
        results: list[dict[str, Any]] = json.loads(out[out.index("["):])[0]["results"]
        return results
