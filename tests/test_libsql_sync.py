"""pg2edge sync into real sqld and tursodb: snapshot (direct by default, or staged), every kind of change, exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from pg2edge.pipeline.daemon import run_sync
from pg2edge.pipeline.remote import HranaClient, parse_target
from pg2edge.validators import validate
from tests.support.edge import SqldServer, TursoServer
from tests.support.rows import run_sql

Cli = Callable[..., CompletedProcess[str]]


def _quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))


def _clean(dsn: str, url: str) -> None:
    report = validate(dsn, parse_target(url, env={}), mode="full", timeout=30)
    bad = {t.table: [m.key for m in t.mismatches] for t in report.tables if t.mismatches}
    assert report.clean, (bad, [(t.table, t.source_rows, t.replica_rows) for t in report.tables])


def test_changes_of_every_kind_stream_into_the_remote(pg_dsn: str, edge_server: SqldServer | TursoServer,
                                                      tmp_path: Path) -> None:
    url = edge_server.url
    run_sql(pg_dsn,
            "CREATE TABLE docs (id int PRIMARY KEY, title text, body text, n numeric(12,2), tags text[], meta jsonb)",
            "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",
            "CREATE TABLE other (id bigint PRIMARY KEY, v text)",
            "INSERT INTO docs VALUES (1, 'a', repeat('x', 100000), 1.50, '{a,b}', '{\"k\": [1, 2]}')",
            "INSERT INTO docs SELECT g, 's' || g, 'b', g, '{}', 'null' FROM generate_series(3000, 5000) g")
    first = run_sync(dsn=pg_dsn, target=url, until_caught_up=True, say=_quiet)
    assert first.snapshot is not None and first.snapshot.rows == 2002
    assert not list((tmp_path / "staging").glob("*.db"))  # the staging file is gone once uploaded
    run_sql(pg_dsn,
            "UPDATE docs SET title = 'toast untouched' WHERE id = 1",  # body arrives as unchanged TOAST
            "INSERT INTO docs SELECT g, 't' || g, 'b', g, '{}', 'null' FROM generate_series(2, 50) g",
            "UPDATE docs SET id = 1000 WHERE id = 2",  # primary-key change
            "UPDATE docs SET id = 1001, title = 'moved with toast' WHERE id = 1",  # key change + unchanged TOAST
            "DELETE FROM docs WHERE id BETWEEN 10 AND 12",
            "INSERT INTO other SELECT g, 'v' FROM generate_series(1, 10) g",
            "TRUNCATE other",
            "INSERT INTO other VALUES (99, 'after truncate')",
            "ALTER TABLE other ADD COLUMN extra text",
            "INSERT INTO other VALUES (100, 'with extra', 'e')")
    report = run_sync(dsn=pg_dsn, target=url, until_caught_up=True, say=_quiet)
    assert report.stopped_by == "caught up" and report.transactions >= 9
    assert report.snapshot is not None and report.snapshot.already_complete
    assert any("column-added" in f for f in report.findings)
    _clean(pg_dsn, url)
    with HranaClient(parse_target(url, env={})) as client:
        assert client.execute('SELECT length("body") FROM "docs" WHERE "id" = 1001').rows == [(100000,)]
        pos = json.loads(client.execute("SELECT value FROM _pg2edge_state WHERE scope = 'position'").rows[0][0])
    assert report.position is not None and pos["commit_lsn"] == report.position.commit_lsn
    # nothing new: a rerun applies nothing and skips what is already there
    again = run_sync(dsn=pg_dsn, target=url, until_caught_up=True, say=_quiet)
    assert again.transactions == 0


def test_sync_cli_into_sqld_and_status(pg_dsn: str, sqld: SqldServer, run_cli: Cli, tmp_path: Path) -> None:
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)",
            "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 500) g")
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "st")}
    res = run_cli("sync", "--source", pg_dsn, "--target", sqld.url, "--until-caught-up", env=env)
    assert res.returncode == 0, res.stderr
    assert "direct" in res.stdout and "snapshot: 500 rows" in res.stdout and "replica at" in res.stdout
    assert not list((tmp_path / "st").glob("*.db"))  # the default path writes no staging file
    run_sql(pg_dsn, "UPDATE items SET name = 'changed' WHERE id <= 10")
    res = run_cli("sync", "--source", pg_dsn, "--target", sqld.url, "--until-caught-up", env=env)
    assert res.returncode == 0, res.stderr
    assert "1 transactions, 10 row changes" in res.stdout
    res = run_cli("status", "--target", sqld.url, "--source", pg_dsn, "--format", "json")
    st = json.loads(res.stdout)
    assert st["snapshot"] == "done" and st["lag_bytes"] is not None and st["retry_queue"] == 0
    _clean(pg_dsn, sqld.url)


class _LostAnswers(HranaClient):
    """A real client whose every pipeline request reaches the server twice, as when an answer is lost and
    the session sends the request again: the second answer is the one the caller sees."""

    sent_twice = 0

    def pipeline(self, requests, *, baton=None, close=False):  # type: ignore[no-untyped-def]
        super().pipeline(requests, baton=baton, close=close)
        type(self).sent_twice += 1
        return super().pipeline(requests, baton=baton, close=close)


@pytest.mark.parametrize("snapshot_path", ["direct", "staged"])
def test_a_request_sent_twice_is_applied_once(pg_dsn: str, sqld: SqldServer, monkeypatch: pytest.MonkeyPatch,
                                              snapshot_path: str) -> None:
    import pg2edge.pipeline.sinks.libsql as libsql

    monkeypatch.setattr(libsql, "HranaClient", _LostAnswers)
    run_sql(pg_dsn, "CREATE TABLE ledger (id bigserial PRIMARY KEY, amount int NOT NULL)",
            "CREATE TABLE nokey (v text)",
            "ALTER TABLE nokey REPLICA IDENTITY FULL",
            "INSERT INTO ledger (amount) SELECT 1 FROM generate_series(1, 3000)",
            "INSERT INTO nokey SELECT 'snap' FROM generate_series(1, 50)")
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet, snapshot_path=snapshot_path)
    for _ in range(5):
        run_sql(pg_dsn, "INSERT INTO ledger (amount) VALUES (1), (1)", "INSERT INTO nokey VALUES ('cdc')")
    run_sync(dsn=pg_dsn, target=sqld.url, until_caught_up=True, say=_quiet)
    assert _LostAnswers.sent_twice > 10
    with HranaClient(parse_target(sqld.url, env={})) as client:
        assert client.execute('SELECT count(*), sum("amount") FROM "ledger"').rows == [(3010, 3010)]
        assert client.execute('SELECT "v", count(*) FROM "nokey" GROUP BY 1 ORDER BY 1').rows == [("cdc", 5),
                                                                                                 ("snap", 50)]
