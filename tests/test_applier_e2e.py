"""End to end: real PostgreSQL -> pgoutput stream -> applier -> real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import psycopg
import pytest

from pg2edge.pipeline import state
from pg2edge.pipeline.errors import ApplyError
from pg2edge.pipeline.publication import setup_publication
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sources.cdc import CdcSource
from pg2edge.pipeline.sources.replication import ReplicationStream, create_slot, slot_status
from tests.support.cdc import pg_rows, sqlite_rows, sync

ITEMS = ["id", "name", "price", "body"]
TAGS = ["item_id", "tag", "note"]

SOURCE_DDL = [
    "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), body text)",
    "CREATE TABLE tags (item_id int, tag text, note text, PRIMARY KEY (item_id, tag))",
    "CREATE TABLE audit (id bigint PRIMARY KEY, msg text)",
]
REPLICA_DDL = [
    "CREATE TABLE items (id TEXT PRIMARY KEY, name TEXT, price TEXT, body TEXT)",
    "CREATE TABLE tags (item_id TEXT, tag TEXT, note TEXT, PRIMARY KEY (item_id, tag))",
    "CREATE TABLE audit (id TEXT, msg TEXT)",  # no key: a replayed insert would show as a duplicate
]


def identity(column: str, text: str | None) -> str | None:
    return text


MAPPINGS = {("public", t): TableMapping(target=t, encode=identity) for t in ("items", "tags", "audit")}


class Rig:
    def __init__(self, dsn: str, path: Path) -> None:
        self.dsn = dsn
        self.path = path
        with psycopg.connect(dsn, autocommit=True) as conn:
            for stmt in SOURCE_DDL:
                conn.execute(stmt)
        self.db = open_replica(path)
        for stmt in REPLICA_DDL:
            self.db.execute(stmt)
        setup_publication(dsn, publication="p", replica=self.db)
        self.slot_lsn = create_slot(dsn, "s")
        self.applier = Applier(self.db, MAPPINGS)
        self.source = self.open_source(self.slot_lsn)

    def open_source(self, start_lsn: int) -> CdcSource:
        stream = ReplicationStream(self.dsn, slot="s", publications=["p"], start_lsn=start_lsn, status_interval=1)
        stream.start()
        return CdcSource(stream)

    def run(self, *stmts: str) -> None:
        with psycopg.connect(self.dsn) as conn:
            for stmt in stmts:
                conn.execute(stmt)

    def assert_equal(self) -> None:
        for table, cols in (("items", ITEMS), ("tags", TAGS), ("audit", ["id", "msg"])):
            assert sqlite_rows(self.db, table, cols) == pg_rows(self.dsn, table, cols), table


@pytest.fixture
def rig(pg_dsn: str, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(pg_dsn, tmp_path / "replica.db")
    try:
        yield r
    finally:
        r.source.close()
        r.db.close()


BIG = "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 300)"


def test_stream_applies_every_kind_of_change(rig: Rig) -> None:
    rig.run("INSERT INTO items SELECT g, 'item ' || g, g * 1.5, NULL FROM generate_series(1, 50) g",
            "INSERT INTO tags SELECT g, 'red', NULL FROM generate_series(1, 20) g")
    rig.run(f"UPDATE items SET body = ({BIG}) WHERE id <= 3")
    rig.run("UPDATE items SET price = price + 1 WHERE id % 2 = 0",
            "DELETE FROM items WHERE id > 40",
            "UPDATE items SET id = 100 WHERE id = 5",  # primary-key change
            "UPDATE tags SET tag = 'blue' WHERE item_id = 2",  # composite key change
            "DELETE FROM tags WHERE item_id = 3")
    rig.run("UPDATE items SET name = 'renamed' WHERE id <= 3")  # body stays: unchanged TOAST
    rig.run("UPDATE items SET id = 103 WHERE id = 3")  # key change with unchanged TOAST
    rig.run("INSERT INTO audit VALUES (1, 'hello'), (2, NULL)")
    results = sync(rig.source, rig.applier, rig.dsn)
    assert sum(r.applied for r in results) == 6  # one per rig.run()
    rig.assert_equal()
    bodies = rig.db.execute("SELECT id, length(body) FROM items WHERE body IS NOT NULL ORDER BY id").fetchall()
    assert [tuple(b) for b in bodies] == [("1", 9600), ("103", 9600), ("2", 9600)]
    assert rig.db.execute("SELECT name FROM items WHERE id = '1'").fetchall() == [("renamed",)]

    rig.run("TRUNCATE tags")
    rig.run("INSERT INTO tags VALUES (7, 'green', 'after truncate')")
    sync(rig.source, rig.applier, rig.dsn)
    rig.assert_equal()
    assert sqlite_rows(rig.db, "tags", TAGS) == [("7", "green", "after truncate")]
    pos = state.read_position(rig.db)
    assert pos is not None and pos.end_lsn > pos.commit_lsn > rig.slot_lsn


def test_restart_without_ack_applies_nothing_twice(rig: Rig) -> None:
    for i in range(1, 6):
        rig.run(f"INSERT INTO audit VALUES ({i}, 'row {i}')")
    sync(rig.source, rig.applier, rig.dsn, ack=False, max_transactions=2)
    assert rig.db.execute("SELECT count(*) FROM audit").fetchone() == (5,)
    rig.source.close()  # "crash": nothing was acknowledged to PostgreSQL

    slot = slot_status(rig.dsn, "s")
    assert slot is not None and slot.confirmed_flush_lsn <= rig.slot_lsn  # the slot did not advance

    rig.source = rig.open_source(rig.slot_lsn)  # the server resends all five transactions
    rig.run("INSERT INTO audit VALUES (6, 'after restart')")
    results = sync(rig.source, rig.applier, rig.dsn)
    assert sum(r.skipped for r in results) == 5 and sum(r.applied for r in results) == 1
    assert rig.db.execute("SELECT count(*), count(DISTINCT id) FROM audit").fetchone() == (6, 6)
    rig.assert_equal()

    # a second restart from the stored position (the normal path) resends nothing
    rig.source.close()
    pos = state.read_position(rig.db)
    assert pos is not None
    rig.source = rig.open_source(pos.end_lsn)
    rig.run("INSERT INTO audit VALUES (7, 'again')")
    results = sync(rig.source, rig.applier, rig.dsn)
    assert sum(r.skipped for r in results) == 0 and sum(r.applied for r in results) == 1
    rig.assert_equal()


def test_transaction_over_several_tables_is_all_or_nothing(rig: Rig) -> None:
    rig.run("INSERT INTO items VALUES (1, 'one', 1, NULL)")
    sync(rig.source, rig.applier, rig.dsn)
    before = state.read_position(rig.db)

    def picky(column: str, text: str | None) -> str | None:
        if text == "poison":
            raise ValueError(f"codec refuses {column}={text!r}")
        return text

    # one source transaction touching items and tags; the tags row cannot be encoded
    rig.applier.mappings[("public", "tags")] = TableMapping(target="tags", encode=picky)
    rig.run("INSERT INTO items VALUES (2, 'two', 2, NULL)", "UPDATE items SET name = 'uno' WHERE id = 1",
            "INSERT INTO tags VALUES (2, 'poison', NULL)")
    reader = apsw.Connection(str(rig.path))
    with pytest.raises(ValueError, match="poison"):
        sync(rig.source, rig.applier, rig.dsn, timeout=10)
    # nothing of that transaction is visible to another reader; the position did not move
    assert reader.execute("SELECT id, name FROM items ORDER BY id").fetchall() == [("1", "one")]
    assert reader.execute("SELECT count(*) FROM tags").fetchone() == (0,)
    assert state.read_position(reader) == before

    rig.applier.mappings[("public", "tags")] = TableMapping(target="tags", encode=identity)
    rig.source.close()
    rig.source = rig.open_source(before.end_lsn if before else rig.slot_lsn)
    sync(rig.source, rig.applier, rig.dsn)
    assert reader.execute("SELECT id, name FROM items ORDER BY id").fetchall() == [("1", "uno"), ("2", "two")]
    rig.assert_equal()
    reader.close()


def test_unmapped_table_is_named(rig: Rig) -> None:
    del rig.applier.mappings[("public", "audit")]
    rig.run("INSERT INTO audit VALUES (1, 'x')")
    with pytest.raises(ApplyError, match=r"public\.audit"):
        sync(rig.source, rig.applier, rig.dsn, timeout=10)


@pytest.mark.slow
def test_300k_row_transaction_streams_and_applies(rig: Rig) -> None:
    rig.run("INSERT INTO items SELECT g, md5(g::text), g, NULL FROM generate_series(1, 300000) g")
    results = sync(rig.source, rig.applier, rig.dsn, timeout=300)
    applied = [r for r in results if r.applied]
    assert len(applied) == 1 and applied[0].applied == 1 and applied[0].rows == 300_000
    assert rig.db.execute("SELECT count(*) FROM items").fetchone() == (300_000,)
    with psycopg.connect(rig.dsn) as conn:
        row = conn.execute("SELECT name FROM items WHERE id = 299999").fetchone()
    assert rig.db.execute("SELECT name FROM items WHERE id = '299999'").fetchone() == row


def test_keyless_table_with_replica_identity_full(pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (who text, body text)")
    db = open_replica(tmp_path / "r.db")
    db.execute("CREATE TABLE notes (who TEXT, body TEXT)")
    result = setup_publication(pg_dsn, publication="p", allow_replica_identity_full=True, replica=db)
    assert [t.qualified for t in result.selection.needs_full] == ["public.notes"]
    start = create_slot(pg_dsn, "s")
    applier = Applier(db, {("public", "notes"): TableMapping(target="notes")})
    stream = ReplicationStream(pg_dsn, slot="s", publications=["p"], start_lsn=start)
    stream.start()
    src = CdcSource(stream)
    stmts = ["INSERT INTO notes VALUES ('ann', 'x'), ('ann', 'x'), ('bob', NULL)",
             f"INSERT INTO notes SELECT 'big', ({BIG})",
             "UPDATE notes SET who = 'bea' WHERE who = 'bob'",
             "UPDATE notes SET who = 'huge' WHERE who = 'big'",  # body: unchanged TOAST in the new tuple
             "DELETE FROM notes WHERE ctid = (SELECT min(ctid) FROM notes WHERE who = 'ann')"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for stmt in stmts:
            conn.execute(stmt)
    sync(src, applier, pg_dsn)
    cols = ["who", "body"]
    assert sqlite_rows(db, "notes", cols) == pg_rows(pg_dsn, "notes", cols)
    assert db.execute("SELECT who, length(body) FROM notes WHERE who = 'huge'").fetchall() == [("huge", 9600)]
    stream.close()
    db.close()
