"""Bad input, as an operator would give it: every case is exit 2 and one line naming the object.

Each case runs the real CLI against real PostgreSQL (the session server, or a
private cluster with ``wal_level=replica`` and password authentication) and
real files, then checks: exit 2; stderr is exactly one line ``pg2edge CMD:
error: ...`` that names the object and holds no traceback (nor a secret);
nothing printed on stdout; the source unchanged (slots, publications, replica
identities, walsenders such as a snapshot keeper); and the working folder
byte-for-byte as before (no new, changed or removed file).

How the file system cases are made real (the tests run as root, so
permissions alone cannot refuse a write): a read-only folder is a read-only
bind mount, a full disk is a small tmpfs filled to the last byte; both are
skipped where mounting is not permitted. A tenant id with NUL cannot come from
PostgreSQL (text refuses NUL), so that rule is tested on the library function
in test_hard_edges.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from pg2edge.pgcluster import ClusterError, LocalCluster, free_port
from tests.support.rows import run_sql

SECRET = "s3cr3t-Pw-77"


# -- a private cluster: wal_level=replica, a role that needs a password -------------------------------
@dataclass
class OddCluster:
    cluster: LocalCluster

    def dsn(self, *, password: str | None = None, user: str = "postgres", dbname: str = "postgres") -> str:
        params: dict[str, str] = {"host": "127.0.0.1", "port": str(self.cluster.port), "user": user,
                                  "dbname": dbname}
        if password is not None:
            params["password"] = password
        return conninfo.make_conninfo("", **params)


@pytest.fixture(scope="module")
def odd_cluster() -> Iterator[OddCluster]:
    try:
        cluster = LocalCluster(settings={"wal_level": "replica"})
        cluster.start()
    except ClusterError as exc:
        pytest.skip(f"no private PostgreSQL cluster here: {exc}")
    try:
        odd = OddCluster(cluster)
        run_sql(odd.dsn(), f"CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD '{SECRET}'",
                "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a')")
        hba = cluster.datadir / "pg_hba.conf"
        hba.write_text("host all pwuser 127.0.0.1/32 scram-sha-256\n"
                       "host replication pwuser 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        run_sql(odd.dsn(), "SELECT pg_reload_conf()")
        time.sleep(0.3)
        yield odd
    finally:
        cluster.stop()


# -- what must not change ------------------------------------------------------------------------------
def source_state(dsn: str) -> tuple[object, ...]:
    """Slots, publications, replica identities and walsenders of ``dsn``'s database."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        db = conn.info.dbname
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s ORDER BY 1",
                             (db,)).fetchall()
        pubs = conn.execute("SELECT pubname FROM pg_publication ORDER BY 1").fetchall()
        idents = conn.execute("SELECT relname, relreplident FROM pg_class WHERE relkind = 'r' "
                              "AND relnamespace = 'public'::regnamespace ORDER BY 1").fetchall()
    return slots, pubs, idents, walsenders(dsn)


def walsenders(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' "
                           "AND datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def files(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root`` with its size and mtime. A ``-shm`` file (SQLite's shared-memory WAL index,
    which any reader of a WAL database maps and touches) is compared by existence only."""
    out: dict[str, tuple[int, int] | None] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        skip = p.is_dir() or p.name.endswith("-shm")
        out[str(p.relative_to(root))] = None if skip else (st.st_size, st.st_mtime_ns)
    return out


# -- the cases -----------------------------------------------------------------------------------------
@dataclass
class Ctx:
    dsn: str  # a fresh database with table t (primary key) and a few rows
    work: Path  # the CLI's working folder
    request: pytest.FixtureRequest
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # DSNs whose state must not change

    def odd(self) -> OddCluster:
        odd: OddCluster = self.request.getfixturevalue("odd_cluster")
        self.checked.append(odd.dsn())
        return odd

    def with_params(self, **params: str) -> str:
        base = conninfo.conninfo_to_dict(self.dsn)
        base.update(params)
        return conninfo.make_conninfo("", **base)

    def mount(self, *args: str) -> None:
        res = subprocess.run(["mount", *args], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"mount {' '.join(args)} is not permitted here: {res.stderr.strip()}")
        self.cleanups.append(lambda: subprocess.run(["umount", "-l", args[-1]], capture_output=True))

    def replica(self, name: str = "replica.db") -> Path:
        """A real replica of ``dsn`` (snapshot through the library), its keeper gone."""
        from pg2edge.pipeline.sources.snapshot import run_snapshot

        path = self.work / name
        run_snapshot(dsn=self.dsn, target=path, say=lambda _: None)
        deadline = time.monotonic() + 10
        while walsenders(self.dsn) and time.monotonic() < deadline:
            time.sleep(0.1)
        return path


Case = Callable[[Ctx], tuple[list[str], str]]  # -> (argv, text the one line must contain)


def sync(ctx: Ctx, target: str, *, source: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    return ["sync", "--source", source or ctx.dsn, "--target", target, "--until-caught-up", *extra]


def _wrong_host(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "r.db", source=ctx.with_params(host="no-such-host.invalid", connect_timeout="5")), \
        "no-such-host.invalid"


def _wrong_port(ctx: Ctx) -> tuple[list[str], str]:
    port = str(free_port())
    return sync(ctx, "r.db", source=ctx.with_params(port=port, connect_timeout="5")), f"port {port}"


def _wrong_password(ctx: Ctx) -> tuple[list[str], str]:
    odd = ctx.odd()
    return sync(ctx, "r.db", source=odd.dsn(user="pwuser", password="not-" + SECRET)), \
        f"port {odd.cluster.port}"


def _wrong_database(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "r.db", source=ctx.with_params(dbname="no_such_db_x")), "no_such_db_x"


def _no_replication(ctx: Ctx) -> tuple[list[str], str]:
    run_sql(ctx.dsn, "DROP ROLE IF EXISTS he_norepl", "CREATE ROLE he_norepl LOGIN",
            "ALTER TABLE t OWNER TO he_norepl")
    return sync(ctx, "r.db", source=ctx.with_params(user="he_norepl")), "lacks the REPLICATION attribute"


def _not_owner(ctx: Ctx) -> tuple[list[str], str]:
    run_sql(ctx.dsn, "DROP ROLE IF EXISTS he_repl", "CREATE ROLE he_repl LOGIN REPLICATION",
            "GRANT CREATE ON DATABASE " + conninfo.conninfo_to_dict(ctx.dsn)["dbname"] + " TO he_repl")
    return sync(ctx, "r.db", source=ctx.with_params(user="he_repl")), "does not own public.t"


def _wal_level(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "r.db", source=ctx.odd().dsn()), "wal_level is 'replica'"


def _publish_wal_level(ctx: Ctx) -> tuple[list[str], str]:
    return ["publish", "--source", ctx.odd().dsn(), "--bootstrap", "127.0.0.1:9", "--until-caught-up"], \
        "wal_level is 'replica'"


def _publish_no_replication(ctx: Ctx) -> tuple[list[str], str]:
    argv, names = _no_replication(ctx)
    return ["publish", "--source", argv[2], "--bootstrap", "127.0.0.1:9", "--until-caught-up"], names


def _unrelated_sqlite(ctx: Ctx) -> tuple[list[str], str]:
    import apsw

    db = apsw.Connection(str(ctx.work / "app.db"))
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers VALUES (1, 'x')")
    db.close()
    return sync(ctx, "app.db"), "app.db is a SQLite database of another application (tables: customers)"


def _kafka_replica_unrelated_sqlite(ctx: Ctx) -> tuple[list[str], str]:
    argv, names = _unrelated_sqlite(ctx)
    return ["sync", "--from-kafka", "--bootstrap", "127.0.0.1:9", "--source", ctx.dsn, "--target", "app.db",
            "--until-caught-up"], names


def _bad_duration(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "r.db", extra=("--heartbeat", "soon")), "duration 'soon'"


def _garbage(ctx: Ctx) -> None:
    (ctx.work / "garbage.db").write_bytes(os.urandom(20_000))


def _garbage_sync(ctx: Ctx) -> tuple[list[str], str]:
    _garbage(ctx)
    return sync(ctx, "garbage.db"), "replica garbage.db is not a SQLite database"


def _garbage_status(ctx: Ctx) -> tuple[list[str], str]:
    _garbage(ctx)
    return ["status", "--target", "garbage.db"], "replica garbage.db is not a SQLite database"


def _garbage_validate(ctx: Ctx) -> tuple[list[str], str]:
    _garbage(ctx)
    return ["validate", "--source", ctx.dsn, "--target", "garbage.db"], "replica garbage.db is not a SQLite database"


def _truncated(ctx: Ctx) -> None:
    path = ctx.replica()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)


def _truncated_sync(ctx: Ctx) -> tuple[list[str], str]:
    _truncated(ctx)
    return sync(ctx, "replica.db"), "replica replica.db is corrupt: truncated"


def _truncated_status(ctx: Ctx) -> tuple[list[str], str]:
    _truncated(ctx)
    return ["status", "--target", "replica.db"], "replica replica.db is corrupt: truncated"


def _truncated_validate(ctx: Ctx) -> tuple[list[str], str]:
    _truncated(ctx)
    return ["validate", "--source", ctx.dsn, "--target", "replica.db"], "replica replica.db is corrupt: truncated"


def _missing_dir(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "no/such/dir/r.db"), f"directory {ctx.work / 'no/such/dir'} does not exist"


def _file_as_dir(ctx: Ctx) -> tuple[list[str], str]:
    (ctx.work / "plain").write_text("a file, not a folder\n")
    return sync(ctx, "plain/r.db"), "plain is a file, not a directory"


def _read_only_dir(ctx: Ctx) -> tuple[list[str], str]:
    src, ro = ctx.work.parent / "ro-src", ctx.work / "ro"
    src.mkdir()
    ro.mkdir()
    ctx.mount("--bind", str(src), str(ro))
    ctx.mount("-o", "remount,bind,ro", str(ro))
    return sync(ctx, "ro/r.db"), f"directory {ro} is not writable"


def _full_disk(ctx: Ctx) -> tuple[list[str], str]:
    full = ctx.work / "full"
    full.mkdir()
    ctx.mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full))
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill it to the last byte
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return sync(ctx, "full/r.db"), "only 0 bytes free"


def _unknown_scheme(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "ftp://files.example.com/r.db"), "unknown target scheme ftp://"


def _remote_scheme_with_token(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, f"libsql://edge.example.com/db?authToken={SECRET}"), "target libsql://edge.example.com"


def _unknown_config_key(ctx: Ctx) -> tuple[list[str], str]:
    (ctx.work / "pg2edge.toml").write_text('[target]\npath = "r.db"\nwal_mode = "fast"\n')
    return ["sync", "--source", ctx.dsn, "--until-caught-up"], "unknown key 'target.wal_mode'"


def _empty_tables_match(ctx: Ctx) -> tuple[list[str], str]:
    return sync(ctx, "r.db", extra=("--tables", "nothing_like_this*")), "'nothing_like_this*' matches no table"


def _snapshot_no_key(ctx: Ctx) -> tuple[list[str], str]:
    run_sql(ctx.dsn, "CREATE TABLE nokey (v text)")
    return ["snapshot", "--source", ctx.dsn, "--target", "r.db", "--tables", "nokey"], "public.nokey"


def _tenant(ctx: Ctx, bad: str) -> tuple[list[str], str]:
    run_sql(ctx.dsn, "CREATE TABLE notes (tenant_id text, id int, PRIMARY KEY (tenant_id, id))",
            "INSERT INTO notes VALUES ('acme', 1)")
    run_sql(ctx.dsn, "INSERT INTO notes VALUES (%s, 2)", params=(bad,))
    return ["snapshot", "--source", ctx.dsn, "--tenant-pattern", "tenants/{tenant}.db"], "public.notes"


def _tenant_too_long(ctx: Ctx) -> tuple[list[str], str]:
    argv, _ = _tenant(ctx, "é" * 101)
    return argv, "longer than 200 bytes"


def _tenant_empty(ctx: Ctx) -> tuple[list[str], str]:
    argv, _ = _tenant(ctx, "")
    return argv, "empty tenant id: 1 row(s) of public.notes"


def _other_source(ctx: Ctx) -> tuple[list[str], str]:
    ctx.replica()
    other = ctx.request.getfixturevalue("pg_server")
    name = other.create_database()
    ctx.cleanups.append(lambda: other.drop_database(name))
    dsn = other.dsn_for(name)
    run_sql(dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    ctx.checked.append(dsn)
    return sync(ctx, "replica.db", source=dsn), f"not '{name}'"


def _status_missing(ctx: Ctx) -> tuple[list[str], str]:
    return ["status", "--target", "gone.db"], "replica gone.db does not exist"


CASES: dict[str, Case] = {
    "wrong-host": _wrong_host, "wrong-port": _wrong_port, "wrong-password": _wrong_password,
    "wrong-database": _wrong_database, "no-replication-privilege": _no_replication,
    "not-the-table-owner": _not_owner, "wal-level-replica": _wal_level, "publish-wal-level-replica": _publish_wal_level,
    "publish-without-replication-privilege": _publish_no_replication, "unrelated-sqlite-file": _unrelated_sqlite,
    "kafka-replica-into-unrelated-sqlite-file": _kafka_replica_unrelated_sqlite, "bad-duration": _bad_duration,
    "garbage-replica-sync": _garbage_sync, "garbage-replica-status": _garbage_status,
    "garbage-replica-validate": _garbage_validate, "truncated-replica-sync": _truncated_sync,
    "truncated-replica-status": _truncated_status, "truncated-replica-validate": _truncated_validate,
    "missing-directory": _missing_dir, "file-where-a-directory-is-expected": _file_as_dir,
    "read-only-directory": _read_only_dir, "full-disk": _full_disk, "unknown-target-scheme": _unknown_scheme,
    "remote-scheme-not-yet-supported": _remote_scheme_with_token, "unknown-config-key": _unknown_config_key,
    "empty-tables-match": _empty_tables_match, "table-without-a-key": _snapshot_no_key,
    "tenant-id-too-long": _tenant_too_long, "tenant-id-empty": _tenant_empty,
    "replica-of-another-source": _other_source, "status-of-a-missing-replica": _status_missing,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case: str, pg_dsn: str, tmp_path: Path,
                                                         run_cli, request: pytest.FixtureRequest) -> None:
    work = tmp_path / "work"
    work.mkdir()
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    ctx = Ctx(dsn=pg_dsn, work=work, request=request, checked=[pg_dsn])
    try:
        argv, names = CASES[case](ctx)
        before_source = {dsn: source_state(dsn) for dsn in ctx.checked}
        before_files = files(tmp_path)
        result = run_cli(*argv, cwd=work, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"pg2edge {argv[0]}: error: "), lines
        assert names in lines[0], (names, lines[0])
        assert "Traceback" not in result.stderr and SECRET not in result.stderr
        assert result.stdout == "", result.stdout
        time.sleep(0.2)
        assert {dsn: source_state(dsn) for dsn in ctx.checked} == before_source
        assert files(tmp_path) == before_files
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


def test_the_table_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_analyze_reports_wal_level(odd_cluster: OddCluster, run_cli) -> None:
    import json

    run_sql(odd_cluster.dsn(), "SELECT count(*) FROM t", "UPDATE t SET v = 'b'")
    deadline = time.monotonic() + 15
    while True:  # the statistics reach pg_stat_user_tables within about a second
        result = run_cli("analyze", "--source", odd_cluster.dsn(), "--format", "json")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["source"]["wal_level"] == "replica"
    assert any("wal_level is 'replica'" in note and "ALTER SYSTEM SET wal_level = logical" in note
               for note in data["summary"]["notes"]), data["summary"]["notes"]
    table = run_cli("analyze", "--source", odd_cluster.dsn())
    assert table.returncode == 0 and "Source wal_level: replica" in table.stdout, table.stdout
