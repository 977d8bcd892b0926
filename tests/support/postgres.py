"""Where the tests get PostgreSQL: PG2EDGE_TEST_DSN, testcontainers, or a private cluster."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import conninfo, sql

from pg2edge.pgcluster import LocalCluster

log = logging.getLogger(__name__)

CONTAINER_COMMAND = (
    "postgres -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=64 "
    "-c fsync=off -c shared_preload_libraries=pg_stat_statements"
)


@dataclass
class PgServer:
    """A PostgreSQL server for the test session and how to make databases on it."""

    admin_dsn: str
    kind: str
    cluster: LocalCluster | None = None
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def dsn_for(self, dbname: str) -> str:
        params = conninfo.conninfo_to_dict(self.admin_dsn)
        params["dbname"] = dbname
        return conninfo.make_conninfo("", **params)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a test database with its replication slots, whatever state the test left."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active_pid IS NOT NULL", (name,))
            for _ in range(50):
                rows = conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = %s AND NOT active",
                    (name,)).fetchall()
                for (slot,) in rows:
                    try:
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    except psycopg.errors.ObjectInUse:
                        pass
                left = conn.execute(
                    "SELECT count(*) FROM pg_replication_slots WHERE database = %s", (name,)).fetchone()
                if left is None or left[0] == 0:
                    break
                conn.execute("SELECT pg_sleep(0.1)")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        if self._stop:
            self._stop()


def _from_env() -> PgServer | None:
    dsn = os.environ.get("PG2EDGE_TEST_DSN")
    return PgServer(admin_dsn=dsn, kind="PG2EDGE_TEST_DSN") if dsn else None


def _from_testcontainers() -> PgServer | None:
    if os.environ.get("PG2EDGE_TEST_DOCKER", "1") == "0":
        return None
    try:
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:15").with_command(CONTAINER_COMMAND)
    except Exception as exc:  # no Docker engine: the constructor fails, fall back
        log.info("testcontainers unavailable (%s); using a private cluster", type(exc).__name__)
        return None
    container.start()
    dsn = conninfo.make_conninfo(
        "", host=container.get_container_host_ip(), port=str(container.get_exposed_port(5432)),
        user=container.username, password=container.password, dbname=container.dbname)
    return PgServer(admin_dsn=dsn, kind="testcontainers", _stop=container.stop)


def _private_cluster() -> PgServer:
    cluster = LocalCluster()
    cluster.start()
    return PgServer(admin_dsn=cluster.dsn(), kind="private cluster", cluster=cluster, _stop=cluster.stop)


def start_server() -> PgServer:
    return _from_env() or _from_testcontainers() or _private_cluster()
