"""Snapshot into a remote: the staging file uploaded to real sqld and tursodb, resumable, exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest

from pg2edge import sample
from pg2edge.pipeline import state
from pg2edge.pipeline.remote import HranaClient, RemoteConnection, RemoteError, parse_target
from pg2edge.pipeline.remote.upload import UPLOAD_SCOPE, if_not_exists, upload_replica
from pg2edge.pipeline.sources.snapshot import run_snapshot
from tests.support.edge import SqldServer, TursoServer


def _quiet(_: str) -> None:
    pass


def _tables(conn: Any) -> list[str]:
    return sorted(r[0] for r in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
        "AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'libsql%'").fetchall())


def _assert_same(local: Path, remote: RemoteConnection) -> None:
    db = apsw.Connection(str(local), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        names = _tables(db)
        assert names and names == _tables(remote)
        for name in names:
            q = '"' + name.replace('"', '""') + '"'
            cols = ", ".join(f'"{r[1]}"' for r in db.execute(f"PRAGMA table_info({q})"))
            order = f"ORDER BY {cols}"
            assert remote.execute(f"SELECT {cols} FROM {q} {order}").fetchall() == \
                [tuple(r) for r in db.execute(f"SELECT {cols} FROM {q} {order}")], name
        assert state.read_position(remote) == state.read_position(db)  # type: ignore[arg-type]
        assert state.read_source(remote) == state.read_source(db)  # type: ignore[arg-type]
        assert state.read_tables(remote) == state.read_tables(db)  # type: ignore[arg-type]
    finally:
        db.close()


def test_if_not_exists() -> None:
    assert if_not_exists('CREATE TABLE "t" (a)') == 'CREATE TABLE IF NOT EXISTS "t" (a)'
    assert if_not_exists('create unique index "i" on t(a)') == 'CREATE unique index IF NOT EXISTS "i" on t(a)'
    assert if_not_exists('CREATE TABLE IF NOT EXISTS "t" (a)') == 'CREATE TABLE IF NOT EXISTS "t" (a)'
    assert if_not_exists('CREATE VIRTUAL TABLE "f" USING fts5(a)') == 'CREATE VIRTUAL TABLE IF NOT EXISTS "f" USING fts5(a)'


@pytest.fixture
def staged(pg_dsn: str, tmp_path: Path) -> Path:
    sample.install(pg_dsn)
    path = tmp_path / "staging.db"
    run_snapshot(dsn=pg_dsn, target=path, jobs=1, say=_quiet)
    return path


def test_upload_the_sample_shop(staged: Path, edge_server: SqldServer | TursoServer) -> None:
    target = parse_target(edge_server.url, env={})
    seen: list[tuple[str, int, int]] = []
    with HranaClient(target, max_request_bytes=256 * 1024) as client:
        report = upload_replica(staged, client, rows_per_statement=100, on_progress=lambda *a: seen.append(a),
                                say=_quiet)
        assert report.rows > 0 and report.requests > len(report.tables)
        assert seen and all(sent <= total for _, sent, total in seen)
        again = upload_replica(staged, client, say=_quiet)
        assert again.already_complete
    conn = RemoteConnection(target)
    try:
        _assert_same(staged, conn)
        assert conn.execute('SELECT count(*) FROM "_pg2edge_state" WHERE scope = ?', (UPLOAD_SCOPE,)).fetchone() == (0,)
    finally:
        conn.close()


class _CrashAfter(HranaClient):
    """A real client that dies (like a SIGKILL between requests) after ``n`` atomic batches."""

    def __init__(self, *a: Any, n: int, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.left = n

    def batch(self, stmts: Any, *, atomic: bool = True) -> Any:
        if self.left == 0:
            raise KeyboardInterrupt("crash")
        self.left -= 1
        return super().batch(stmts, atomic=atomic)


@pytest.mark.parametrize("crash_after", [1, 3, 7])
def test_upload_resumes_after_a_crash_without_duplicates(staged: Path, sqld: SqldServer, crash_after: int) -> None:
    target = parse_target(sqld.url, env={})
    with _CrashAfter(target, n=crash_after, max_request_bytes=64 * 1024) as client, \
            pytest.raises(KeyboardInterrupt):
        upload_replica(staged, client, rows_per_statement=50, say=_quiet)
    conn = RemoteConnection(target)
    try:
        assert state.read_position(conn) is None  # type: ignore[arg-type]  (incomplete: no position yet)
        with HranaClient(target, max_request_bytes=64 * 1024) as client:
            report = upload_replica(staged, client, rows_per_statement=50, say=_quiet)
        assert not report.already_complete
        _assert_same(staged, conn)
    finally:
        conn.close()


def test_upload_refuses_a_foreign_database(staged: Path, sqld: SqldServer) -> None:
    target = parse_target(sqld.url, env={})
    with HranaClient(target) as client:
        client.execute('CREATE TABLE "customers_of_someone_else" ("id" INTEGER PRIMARY KEY)')
        with pytest.raises(RemoteError, match="not a pg2edge replica") as err:
            upload_replica(staged, client, say=_quiet)
        assert sqld.url in str(err.value)
        assert client.execute("SELECT count(*) FROM sqlite_schema WHERE name = '_pg2edge_state'").rows == [(0,)]
