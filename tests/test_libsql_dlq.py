"""The retry queue and DLQ inside a remote target (real sqld): park, block the key, list, replay, drop."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

from pg2edge.pipeline.remote import HranaClient, parse_target
from tests.support.edge import SqldServer
from tests.support.rows import run_sql

Cli = Callable[..., CompletedProcess[str]]


def test_a_change_the_remote_refuses_is_parked_and_replayed(pg_dsn: str, sqld: SqldServer, run_cli: Cli,
                                                             tmp_path: Path) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    url = sqld.url
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'a')")
    res = run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env)
    assert res.returncode == 0, res.stderr
    with HranaClient(parse_target(url, env={})) as client:  # the remote refuses one value (a trigger on it)
        client.execute('CREATE TRIGGER "no_bad" BEFORE INSERT ON "items" WHEN NEW."name" = \'bad\' '
                       "BEGIN SELECT RAISE(ABORT, 'bad row refused by the edge'); END")
    run_sql(pg_dsn, "INSERT INTO items VALUES (2, 'bad'), (3, 'fine')",
            "UPDATE items SET name = 'bad, later fixed' WHERE id = 2",  # same key: waits behind the parked change
            "UPDATE items SET name = 'b' WHERE id = 1")
    res = run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", "--max-attempts", "1", env=env)
    assert res.returncode == 0, res.stderr
    with HranaClient(parse_target(url, env={})) as client:
        assert client.execute('SELECT "id", "name" FROM "items" ORDER BY "id"').rows == [(1, "b"), (3, "fine")]
    listed = run_cli("dlq", "list", "--target", url, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    queue = json.loads(listed.stdout)
    assert [(q["status"], q["op"]) for q in queue] == [("dead", "c"), ("waiting", "u")]
    assert "bad row refused by the edge" in queue[0]["error"]
    st = json.loads(run_cli("status", "--target", url, "--format", "json").stdout)
    assert (st["dlq"], st["retry_queue"]) == (1, 1)
    replay = run_cli("dlq", "replay", "--all", "--target", url, "--source", pg_dsn)
    assert replay.returncode == 1 and "still in the DLQ" in replay.stdout  # the cause is not fixed yet
    with HranaClient(parse_target(url, env={})) as client:
        client.execute('DROP TRIGGER "no_bad"')
    replay = run_cli("dlq", "replay", "--all", "--target", url, "--source", pg_dsn)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "2 change(s) applied" in replay.stdout
    with HranaClient(parse_target(url, env={})) as client:
        assert client.execute('SELECT "id", "name" FROM "items" ORDER BY "id"').rows == [
            (1, "b"), (2, "bad, later fixed"), (3, "fine")]
    assert json.loads(run_cli("dlq", "list", "--target", url, "--format", "json").stdout) == []
    res = run_cli("validate", "--source", pg_dsn, "--target", url, "--format", "json")
    assert res.returncode == 0, res.stdout


def test_dlq_drop_on_a_remote(pg_dsn: str, sqld: SqldServer, run_cli: Cli, tmp_path: Path) -> None:
    env = {"PG2EDGE_STAGING_DIR": str(tmp_path / "staging")}
    url = sqld.url
    run_sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v int)")
    assert run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", env=env).returncode == 0
    with HranaClient(parse_target(url, env={})) as client:
        client.execute('CREATE TRIGGER "neg" BEFORE INSERT ON "t" WHEN NEW."v" < 0 BEGIN SELECT RAISE(ABORT, \'neg\'); END')
    run_sql(pg_dsn, "INSERT INTO t VALUES (1, -1), (2, 2)")
    res = run_cli("sync", "--source", pg_dsn, "--target", url, "--until-caught-up", "--max-attempts", "1", env=env)
    assert res.returncode == 0, res.stderr
    queue = json.loads(run_cli("dlq", "list", "--target", url, "--format", "json").stdout)
    assert len(queue) == 1 and queue[0]["status"] == "dead"
    dropped = run_cli("dlq", "drop", str(queue[0]["id"]), "--target", url)
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(run_cli("dlq", "list", "--target", url, "--format", "json").stdout) == []
