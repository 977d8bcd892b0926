"""The replication connection against a real PostgreSQL: snapshot slots, acks, status, reconnect."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from pg2edge.pipeline.errors import ReplicationError, SlotTimeoutError
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sources import pgoutput
from pg2edge.pipeline.sources.cdc import CdcSource
from pg2edge.pipeline.sources.replication import (
    ReplicationStream,
    create_slot,
    create_slot_with_snapshot,
    drop_slot,
    identify_system,
    slot_status,
)
from tests.support.cdc import emit_marker, pg_rows, sqlite_rows, sync
from tests.support.postgres import PgServer


def setup_source(dsn: str, *ddl: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in ddl or ("CREATE TABLE t (id int PRIMARY KEY, v text)",):
            conn.execute(stmt)
        conn.execute("CREATE PUBLICATION p FOR ALL TABLES")


def run(dsn: str, *stmts: str) -> None:
    with psycopg.connect(dsn) as conn:
        for stmt in stmts:
            conn.execute(stmt)


def confirmed_flush(dsn: str, slot: str = "s") -> int:
    status = slot_status(dsn, slot)
    assert status is not None
    return status.confirmed_flush_lsn


def test_identify_system_names_the_cluster(pg_dsn: str) -> None:
    ident = identify_system(pg_dsn)
    assert ident.system_identifier.isdigit() and len(ident.system_identifier) >= 15
    assert ident.database == psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"] and ident.xlogpos > 0


def test_slot_with_exported_snapshot_matches_the_stream(pg_dsn: str) -> None:
    setup_source(pg_dsn)
    run(pg_dsn, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    snap = create_slot_with_snapshot(pg_dsn, "s", timeout=30)
    slot, lsn, name, conn = snap
    assert slot == "s" and lsn > 0 and name
    run(pg_dsn, "INSERT INTO t VALUES (4, 'after the slot')")
    with psycopg.connect(pg_dsn) as reader:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute(f"SET TRANSACTION SNAPSHOT '{name}'")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (3,)
    conn.close()
    with ReplicationStream(pg_dsn, slot="s", publications=["p"], start_lsn=lsn) as stream:
        src = CdcSource(stream)
        item = src.next(timeout=10)
    assert isinstance(item, Transaction)
    assert [e.after for e in item.events] == [{"id": "4", "v": "after the slot"}]
    assert drop_slot(pg_dsn, "s") and not drop_slot(pg_dsn, "s")


def test_slot_creation_times_out_on_open_write_transaction_and_names_it(pg_dsn: str) -> None:
    setup_source(pg_dsn)
    blocker = psycopg.connect(pg_dsn)
    blocker.execute("INSERT INTO t VALUES (1, 'open')")
    pid = blocker.info.backend_pid
    try:
        with pytest.raises(SlotTimeoutError, match=rf"waited 1s .*pid {pid}"):
            create_slot_with_snapshot(pg_dsn, "s", timeout=1)
    finally:
        blocker.rollback()
        blocker.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's'").fetchone() == (0,)
    with pytest.raises(ReplicationError, match="invalid replication slot name 'Bad-Name'"):
        create_slot(pg_dsn, "Bad-Name")


def test_slot_advances_only_to_the_acknowledged_lsn(pg_dsn: str) -> None:
    setup_source(pg_dsn)
    start = create_slot(pg_dsn, "s")
    run(pg_dsn, "INSERT INTO t VALUES (1, 'a')")
    run(pg_dsn, "INSERT INTO t VALUES (2, 'b')")
    with ReplicationStream(pg_dsn, slot="s", publications=["p"], start_lsn=start, status_interval=0.2) as stream:
        src = CdcSource(stream)
        first, second = src.next(timeout=10), src.next(timeout=10)
        assert isinstance(first, Transaction) and isinstance(second, Transaction)
        src.next(timeout=1.0)  # idle: several status updates and keepalives go by
        assert confirmed_flush(pg_dsn) == start  # received, not acknowledged
        pinned = slot_status(pg_dsn, "s")
        assert pinned is not None and pinned.active and pinned.retained_wal_bytes > 0
        src.ack(first.end_lsn)
        deadline = time.monotonic() + 5
        while confirmed_flush(pg_dsn) != first.end_lsn and time.monotonic() < deadline:
            src.next(timeout=0.1)
        assert confirmed_flush(pg_dsn) == first.end_lsn
        # an idle publication: only unpublished writes and a heartbeat; acking it releases WAL
        src.ack(second.end_lsn)
        run(pg_dsn, "CREATE UNLOGGED TABLE unpublished AS SELECT g FROM generate_series(1, 1000) g")
        marker = emit_marker(pg_dsn)
        assert src.next(timeout=10) is not None and src.ack_heartbeat() == marker
        deadline = time.monotonic() + 5
        while confirmed_flush(pg_dsn) != marker and time.monotonic() < deadline:
            src.next(timeout=0.1)
        assert confirmed_flush(pg_dsn) == marker > second.end_lsn
        src.ack(first.end_lsn)  # never moves backwards
        assert stream.flushed_lsn == marker
    # the unacknowledged transaction is sent again on the next connection
    run(pg_dsn, "INSERT INTO t VALUES (3, 'c')")
    with ReplicationStream(pg_dsn, slot="s", publications=["p"], start_lsn=start) as stream:
        again = CdcSource(stream).next(timeout=10)
    assert isinstance(again, Transaction) and again.events[0].after == {"id": "3", "v": "c"}


def keyless_rig(dsn: str, tmp_path: Path) -> tuple[ReplicationStream, CdcSource, Applier]:
    setup_source(dsn, "CREATE TABLE audit (id int PRIMARY KEY, msg text)")
    start = create_slot(dsn, "s")
    db = open_replica(tmp_path / "r.db")
    db.execute("CREATE TABLE audit (id TEXT, msg TEXT)")  # keyless: a double apply would show
    applier = Applier(db, {("public", "audit"): TableMapping(target="audit")})
    stream = ReplicationStream(dsn, slot="s", publications=["p"], start_lsn=start, status_interval=1,
                               reconnect_timeout=120)
    stream.start()
    return stream, CdcSource(stream), applier


def assert_audit_equal(dsn: str, applier: Applier, rows: int) -> None:
    cols = ["id", "msg"]
    assert sqlite_rows(applier.conn, "audit", cols) == pg_rows(dsn, "audit", cols)
    assert applier.conn.execute("SELECT count(*), count(DISTINCT id) FROM audit").fetchone() == (rows, rows)


def test_dropped_connection_mid_transaction_reconnects_without_double_apply(pg_dsn: str, tmp_path: Path) -> None:
    stream, src, applier = keyless_rig(pg_dsn, tmp_path)
    run(pg_dsn, "INSERT INTO audit SELECT g, 'first ' || g FROM generate_series(1, 100) g")
    sync(src, applier, pg_dsn)
    run(pg_dsn, "INSERT INTO audit SELECT g, 'big ' || g FROM generate_series(101, 20100) g")
    for _ in range(50):  # half-receive the big transaction, then lose the connection
        frame = stream.read(timeout=5)
        assert frame is not None
        src.assembler.feed(pgoutput.decode(frame.payload), lsn=frame.wal_start)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 's'")
    run(pg_dsn, "INSERT INTO audit VALUES (0, 'after the drop')")
    sync(src, applier, pg_dsn, timeout=60)
    assert stream.generation == 1
    assert_audit_equal(pg_dsn, applier, 20101)
    stream.close()


@pytest.mark.slow
def test_reconnects_after_postgres_restart_and_catches_up(pg_server: PgServer, pg_dsn: str,
                                                          tmp_path: Path) -> None:
    if pg_server.cluster is None:
        pytest.skip("needs the private cluster to restart PostgreSQL")
    cluster = pg_server.cluster
    stream, src, applier = keyless_rig(pg_dsn, tmp_path)
    run(pg_dsn, "INSERT INTO audit SELECT g, 'first ' || g FROM generate_series(1, 20000) g")
    restarter = threading.Thread(target=cluster.restart)
    restarter.start()  # while the stream is busy with the big transaction
    while restarter.is_alive():  # the daemon keeps applying and acknowledging meanwhile
        batch = src.batch(max_wait=0.2)
        if batch:
            res = applier.apply(batch)
            assert res.position is not None
            src.ack(res.position.end_lsn)
    restarter.join()
    run(pg_dsn, "INSERT INTO audit VALUES (0, 'after restart')")
    sync(src, applier, pg_dsn, timeout=120)
    assert stream.generation >= 1
    assert_audit_equal(pg_dsn, applier, 20001)
    stream.close()
