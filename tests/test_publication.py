"""Publication setup on a real PostgreSQL: table selection, replica identity, recorded undo."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pg2edge.errors import ConfigError
from pg2edge.pipeline import state
from pg2edge.pipeline.errors import ReplicaIdentityError
from pg2edge.pipeline.publication import setup_publication, slot_change
from pg2edge.pipeline.sinks.sqlite import open_replica
from pg2edge.pipeline.sourcechanges import teardown
from pg2edge.pipeline.sources.replication import create_slot

DDL = [
    "CREATE TABLE orders (id int PRIMARY KEY, total numeric)",
    "CREATE TABLE products (id int PRIMARY KEY, name text)",
    "CREATE TABLE product_tags (product_id int, tag text)",  # no key, identity DEFAULT
    "CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)",
]


@pytest.fixture
def source(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for stmt in DDL:
            conn.execute(stmt)
    return pg_dsn


def published(dsn: str, pub: str = "p") -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s "
            "ORDER BY 1", (pub,)).fetchall()]


def identity_of(dsn: str, table: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT relreplident::text FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    assert row is not None
    return str(row[0])


def test_table_without_key_is_refused_by_name_and_source_writes_keep_working(source: str) -> None:
    with pytest.raises(ReplicaIdentityError, match=r"public\.product_tags: no primary key"):
        setup_publication(source, publication="p", tables="orders,product*")
    assert published(source) == []  # nothing half-done

    result = setup_publication(source, publication="p")  # default: every replicable table
    assert published(source) == ["public.events", "public.orders", "public.products"]
    skipped = dict(result.selection.skipped)
    assert "no primary key" in skipped["public.product_tags"]
    assert "partition of public.events" in skipped["public.events_2024"]
    assert "unlogged" in skipped["public.scratch"]
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("INSERT INTO product_tags VALUES (1, 'a'), (2, 'b')")
        conn.execute("UPDATE product_tags SET tag = 'c' WHERE product_id = 1")
        conn.execute("DELETE FROM product_tags WHERE product_id = 2")
        assert conn.execute("SELECT product_id, tag FROM product_tags").fetchall() == [(1, "c")]
    with psycopg.connect(source) as conn:
        row = conn.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = 'p'").fetchone()
    assert row == (True,)  # partitioned table published through its root


def test_globs_select_tables_and_unknown_pattern_is_named(source: str) -> None:
    result = setup_publication(source, publication="p", tables="orders, products*", dry_run=True)
    assert [t.qualified for t in result.selection.tables] == ["public.orders", "public.products"]
    assert published(source) == []  # dry run changed nothing
    assert 'CREATE PUBLICATION "p" FOR TABLE "public"."orders", "public"."products"' in result.changes[-1].sql
    with pytest.raises(ConfigError, match="'nope\\*'"):
        setup_publication(source, publication="p", tables="orders,nope*")


def test_replica_identity_full_when_allowed_is_recorded_and_undone(source: str, tmp_path: Path) -> None:
    replica = open_replica(tmp_path / "r.db")
    result = setup_publication(source, publication="p", tables="orders,product_tags",
                               allow_replica_identity_full=True, replica=replica)
    assert identity_of(source, "product_tags") == "f"
    assert published(source) == ["public.orders", "public.product_tags"]
    with psycopg.connect(source) as conn:
        slot = slot_change(conn, "s")
    create_slot(source, "s")
    with replica:
        state.record_source_changes(replica, [slot])
    recorded = state.read_source_changes(replica)
    assert recorded == [*result.changes, slot]
    assert [c.description.split(" ")[0:2] for c in recorded] == [["set", "REPLICA"], ["create", "publication"],
                                                                  ["create", "logical"]]

    undone = teardown(source, recorded)
    assert len(undone) == 3
    assert published(source) == [] and identity_of(source, "product_tags") == "d"
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert teardown(source, recorded) == [c.description for c in reversed(recorded)]  # idempotent
    replica.close()


def test_state_writes_need_the_callers_transaction(tmp_path: Path) -> None:
    replica = open_replica(tmp_path / "r.db")
    with pytest.raises(state.StateError, match="inside the caller's SQLite transaction"):
        state.write_position(replica, state.Position(commit_lsn=1, end_lsn=2))
    with replica:
        state.write_source(replica, state.SourceIdentity("7300000000000000001", "shop"))
    state.check_source(replica, state.SourceIdentity("7300000000000000001", "shop"))
    with pytest.raises(state.StateError, match="belongs to database 'shop'"):
        state.check_source(replica, state.SourceIdentity("7300000000000000002", "shop"))
    replica.close()
