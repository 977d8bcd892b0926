"""A throwaway PostgreSQL cluster from the installed server binaries.

Used by the demo when no DSN is given and by the test fixtures. initdb
refuses to run as root, so as root the cluster runs as the ``postgres`` OS
user in a temp dir that user owns, with its unix socket inside that dir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from psycopg import conninfo

from pg2edge.errors import Pg2EdgeError

log = logging.getLogger(__name__)

BIN_CANDIDATES = ("/usr/lib/postgresql/{v}/bin",)
VERSIONS = ("17", "16", "15")

# Settings of a throwaway cluster: logical decoding on, durability off
# (fsync only; synchronous_commit stays on because it delays decoding).
SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "max_connections": "200",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_preload_libraries": "'pg_stat_statements'",
    "track_functions": "'all'",
    "listen_addresses": "'127.0.0.1'",
    "log_min_messages": "warning",
    "wal_sender_timeout": "'60s'",
}


class ClusterError(Pg2EdgeError):
    """The throwaway PostgreSQL cluster could not be created or started."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl ($PG2EDGE_PG_BIN, PATH, then Debian paths)."""
    env = os.environ.get("PG2EDGE_PG_BIN")
    candidates = [Path(env)] if env else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += [Path(t.format(v=v)) for v in VERSIONS for t in BIN_CANDIDATES]
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file():
            return cand
    raise ClusterError(
        "no PostgreSQL server binaries found (initdb, pg_ctl); install PostgreSQL 15+ "
        "or set PG2EDGE_PG_BIN to their directory, or pass --source DSN for an existing server"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """initdb + pg_ctl in a temp dir on a free loopback port; stop() removes everything."""

    def __init__(self, *, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.bindir = find_bindir()
        self.port = port or free_port()
        self.settings = {**SETTINGS, **(settings or {})}
        self.root: Path | None = None
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return conninfo.make_conninfo(
            "", host="127.0.0.1", port=str(self.port), user="postgres", dbname=dbname
        )

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.run(
            list(args), capture_output=True, text=True, check=False, cwd="/", **kwargs  # type: ignore[arg-type]
        )

    def start(self) -> str:
        self.root = Path(tempfile.mkdtemp(prefix="pg2edge-pg-"))
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        res = self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        if res.returncode != 0:
            self._cleanup()
            raise ClusterError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
        conf = dict(self.settings, port=str(self.port), unix_socket_directories=f"'{self.root}'")
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write("\n# pg2edge throwaway cluster\n")
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        with open(self.datadir / "pg_hba.conf", "a", encoding="utf-8") as fh:
            fh.write("host replication all 127.0.0.1/32 trust\n")
        res = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.root / "server.log"),
            "-w", "-t", "60", "start",
        )
        if res.returncode != 0:
            logtext = (self.root / "server.log").read_text(errors="replace")[-2000:]
            self._cleanup()
            raise ClusterError(f"PostgreSQL did not start on port {self.port}: {res.stderr.strip()} {logtext}")
        log.debug("throwaway PostgreSQL on port %s in %s", self.port, self.root)
        return self.dsn()

    def restart(self) -> None:
        """Restart the server in place (fast shutdown); used by reconnect tests."""
        res = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-m", "fast",
                        "-l", str(self.root / "server.log"), "restart")
        if res.returncode != 0:
            raise ClusterError(f"PostgreSQL restart failed: {res.stderr.strip()}")

    def stop(self) -> None:
        if self.root is None:
            return
        if self.datadir.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        self._cleanup()

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway_cluster(**kwargs: object) -> Iterator[LocalCluster]:
    cluster = LocalCluster(**kwargs)  # type: ignore[arg-type]
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
