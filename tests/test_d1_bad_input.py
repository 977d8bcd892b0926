"""Bad input into D1, under real workerd: named, parked in the DLQ inside D1 or refused first; nothing half-applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pg2edge.pipeline.d1.daemon import run_sync_d1
from pg2edge.pipeline.d1.errors import D1LimitError
from pg2edge.pipeline.remote.http import RetryPolicy as HttpRetry
from pg2edge.pipeline.sinks.retry import RetryPolicy
from tests.support.d1 import LocalD1, wrangler_binary
from tests.support.replica import assert_replica_equals
from tests.support.rows import run_sql

pytestmark = pytest.mark.slow


@pytest.fixture
def d1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalD1]:
    if wrangler_binary() is None:
        pytest.skip("wrangler is not installed: cd tests/node && npm ci")
    local = LocalD1(tmp_path / "d1").start()
    monkeypatch.setenv("PG2EDGE_TARGET_AUTH_TOKEN", local.token)
    monkeypatch.setenv("PG2EDGE_STAGING_DIR", str(tmp_path / "staging"))  # where the snapshot is staged
    try:
        yield local
    finally:
        local.stop()


def sync(dsn: str, d1: LocalD1, **kwargs: object) -> object:
    return run_sync_d1(dsn=dsn, target=d1.url, until_caught_up=True, say=lambda _: None,
                       http=HttpRetry(retry_for=30), **kwargs)  # type: ignore[arg-type]


def queue(d1: LocalD1) -> list[tuple[object, ...]]:
    return d1.read("SELECT status, source_table, keys, error FROM _pg2edge_queue ORDER BY id")


def test_a_statement_d1_refuses_is_parked_its_key_waits_and_other_keys_flow(pg_dsn: str, d1: LocalD1,
                                                                            run_cli) -> None:
    run_sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text)", "INSERT INTO items VALUES (1, 'a')")
    sync(pg_dsn, d1)
    d1.post("/v1/batch", {"statements": [{"sql": "CREATE TRIGGER refuse_bad BEFORE INSERT ON items "
                                                 "WHEN NEW.name = 'bad' BEGIN SELECT RAISE(ABORT, 'bad name'); END"}]})
    run_sql(pg_dsn, "INSERT INTO items VALUES (2, 'bad'), (3, 'fine')",  # one transaction: 3 must still land
            "UPDATE items SET name = 'later' WHERE id = 2",  # waits behind the parked change of key 2
            "INSERT INTO items VALUES (4, 'd')")
    report = sync(pg_dsn, d1, policy=RetryPolicy(max_attempts=1))
    assert report.stopped_by == "caught up"  # type: ignore[attr-defined]
    assert d1.read("SELECT id, name FROM items ORDER BY id") == [(1, "a"), (3, "fine"), (4, "d")]
    parked = queue(d1)
    assert [(s, t, k) for s, t, k, _ in parked] == [
        ("dead", "public.items", '["public.items:{\\"id\\":\\"2\\"}"]'),
        ("waiting", "public.items", '["public.items:{\\"id\\":\\"2\\"}"]')]
    assert "bad name" in str(parked[0][3]) and "items" in str(parked[0][3])
    # the cause fixed on D1, the DLQ replayed: key 2 gets both of its changes, in order
    d1.post("/v1/batch", {"statements": [{"sql": "DROP TRIGGER refuse_bad"}]})
    listed = run_cli("dlq", "list", "--target", d1.url, "--format", "json", env={"PG2EDGE_TARGET_AUTH_TOKEN": d1.token})
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["dead", "waiting"]
    replayed = run_cli("dlq", "replay", "--all", "--target", d1.url, "--source", pg_dsn,
                       env={"PG2EDGE_TARGET_AUTH_TOKEN": d1.token})
    assert replayed.returncode == 0, replayed.stderr
    assert "2 change(s) applied; 0 still in the DLQ" in replayed.stdout
    assert queue(d1) == []
    assert_replica_equals(pg_dsn, d1.sqlite_file())


def test_a_row_over_2_mb_is_named_and_parked_in_the_dlq_before_it_is_sent(pg_dsn: str, d1: LocalD1) -> None:
    run_sql(pg_dsn, "CREATE TABLE docs (id int PRIMARY KEY, body text)", "INSERT INTO docs VALUES (1, 'small')")
    sync(pg_dsn, d1)
    run_sql(pg_dsn, "INSERT INTO docs VALUES (2, repeat('x', 2100000)), (3, 'ok')")
    sync(pg_dsn, d1)
    assert d1.read("SELECT id FROM docs ORDER BY id") == [(1,), (3,)]
    [(status, table, keys, error)] = queue(d1)
    assert status == "dead" and table == "public.docs"
    assert "create on docs key {'id': '2'}: one value is 2100000 bytes, over D1's 2000000-byte limit" in str(error)


def test_a_table_over_100_columns_is_refused_by_name_before_anything_reaches_d1(pg_dsn: str, d1: LocalD1) -> None:
    cols = ", ".join(f"c{i} int" for i in range(100))
    run_sql(pg_dsn, f"CREATE TABLE wide (id int PRIMARY KEY, {cols})", "CREATE TABLE fine (id int PRIMARY KEY)")
    with pytest.raises(D1LimitError, match=r"table wide: 101 columns, over D1's limit of 100 per table"):
        sync(pg_dsn, d1)
    assert d1.read("SELECT name FROM sqlite_schema WHERE name IN ('wide', 'fine')") == []
    sync(pg_dsn, d1, tables="fine")  # without it the sync goes ahead
    assert d1.read("SELECT name FROM sqlite_schema WHERE name IN ('wide', 'fine')") == [("fine",)]


def test_a_transaction_too_big_for_one_d1_batch_stops_the_stream_by_name_and_nothing_of_it_lands(
        pg_dsn: str, d1: LocalD1) -> None:
    from pg2edge.pipeline.d1.limits import D1Limits
    from pg2edge.pipeline.sinks.d1 import TransactionTooLarge

    run_sql(pg_dsn, "CREATE TABLE events (id int PRIMARY KEY, body text)")
    limits = D1Limits(transaction_bytes=300_000)
    sync(pg_dsn, d1, limits=limits)
    run_sql(pg_dsn, "INSERT INTO events VALUES (1, 'before')",
            "INSERT INTO events SELECT g, repeat('x', 1000) FROM generate_series(100, 1099) g",  # ~1 MB, one txn
            "INSERT INTO events VALUES (2, 'after')")
    with pytest.raises(TransactionTooLarge, match=r"source transaction xid \d+ needs a \d+-byte D1 batch \(1000 row "
                                                  r"changes, most in table public.events: 1000\)"):
        sync(pg_dsn, d1, limits=limits)
    assert d1.read("SELECT id FROM events ORDER BY id") == [(1,)]  # before it: applied; of it: nothing
    assert sync(pg_dsn, d1).stopped_by == "caught up"  # type: ignore[attr-defined]  # a bigger limit: all of it
    assert_replica_equals(pg_dsn, d1.sqlite_file())
