"""The publisher: snapshot rows, then CDC transactions, from PostgreSQL into one Kafka topic.

Design (see docs/kafka.md):

* Topic ``<prefix>.<database>.changes`` with one partition (source commit order),
  or, with ``tenant_column``, N partitions by tenant (:mod:`pipeline.kafka.partitioning`).
* The snapshot travels through the topic (``op: "r"`` records between
  ``snapshot-begin`` and ``snapshot-end`` controls), so a new replica can
  bootstrap from the topic alone; a snapshot interrupted by a crash is
  restarted from scratch with a new slot (the next ``snapshot-begin`` makes
  replicas empty their tables).
* The slot is acknowledged only after the producer flushed (acks=all) every
  record up to that LSN. A crash before the ack re-sends from the slot's
  confirmed position: duplicates in the topic, absorbed by the replicas' LSN check.
* State (source identity, slot, publication, snapshot run, last acked LSN) is
  kept in a small SQLite file with :mod:`pipeline.state`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import psycopg
from psycopg import sql

from pg2edge import dsn as dsnlib
from pg2edge.errors import ConfigError
from pg2edge.pipeline import keeper, preflight, state
from pg2edge.pipeline.daemon import Heartbeater, StopFlag, current_wal_lsn
from pg2edge.pipeline.events import ChangeEvent, Op, SourceInfo
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import Headers, Producer, ensure_topic, make_producer
from pg2edge.pipeline.kafka.partitioning import TenantPartitioning, discover
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.metrics import Metrics, StreamProbe
from pg2edge.pipeline.publication import setup_publication, slot_change
from pg2edge.pipeline.replication import ReplicationStream, drop_slot, identify_system
from pg2edge.pipeline.snapshot import published_tables, stream_names
from pg2edge.pipeline.source import CdcSource

log = logging.getLogger(__name__)

DEFAULT_STATE = "pg2edge-publisher.db"
PARTITIONING = ("kafka", "partitioning")
RESNAPSHOT = "resnapshot"  # run status: a finished snapshot the operator asked to replace (--resnapshot)


@dataclass
class PublishReport:
    topic: str
    snapshot_rows: int = 0
    transactions: int = 0
    events: int = 0
    acked_lsn: int = 0
    stopped_by: str = "caught up"


def open_state(path: str | Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA journal_mode=WAL")
    state.ensure_state_table(conn)
    return conn


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> tuple[list[str], list[str]]:
    """Published columns (not dropped, not generated) and the key (primary key or identity index)."""
    rel = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)).as_string(conn)
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", (rel,)).fetchall()]
    key = [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND (i.indisprimary OR i.indisreplident) "
        "ORDER BY i.indisprimary DESC, array_position(i.indkey::int2[], a.attnum)", (rel,)).fetchall()]
    return cols, list(dict.fromkeys(key))


def _send_everywhere(producer: Producer, topic: str, partitions: int, record: tuple[bytes, bytes, Headers]) -> None:
    """A control record (snapshot bounds, heartbeat) goes to every partition."""
    k, v, h = record
    for p in range(partitions):
        producer.send(topic, value=v, key=k, headers=h, partition=p)


def _publish_snapshot(dsn: str, snapshot: str, lsn: int, tables: Sequence[tuple[str, str]],
                      producer: Producer, topic: str, say: Callable[[str], None],
                      parting: TenantPartitioning | None) -> int:
    rows = 0
    now_ms = int(time.time() * 1000)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        for schema, table in tables:
            cols, key = _columns(conn, schema, table)
            source = SourceInfo(lsn=lsn, commit_lsn=lsn, tx_id=None, ts_ms=now_ms, schema=schema, table=table,
                                snapshot=True)
            stmt = sql.SQL("COPY (SELECT {} FROM {}.{}) TO STDOUT").format(
                sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(schema), sql.Identifier(table))
            n = 0
            with conn.cursor() as cur, cur.copy(stmt) as copy:
                for values in copy.rows():
                    after = dict(zip(cols, values))
                    ev = ChangeEvent(Op.READ, None, after, source, {k: after[k] for k in key})
                    k, v, h = records.snapshot_record(ev)
                    for p in parting.row_partitions((schema, table), after) if parting else (0,):
                        producer.send(topic, value=v, key=k, headers=h, partition=p)
                    n += 1
                    if n % 50_000 == 0:
                        producer.flush()
            say(f"snapshot: {schema}.{table}: {n} rows published")
            rows += n
    return rows


def _snapshot(dsn: str, db: apsw.Connection, state_path: str, names: state.StreamInfo,
              ident: state.SourceIdentity, producer: Producer, topic: str, say: Callable[[str], None],
              parting: TenantPartitioning | None) -> int:
    run = state.read_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME)
    if run:  # an interrupted snapshot (its rows may be half published) or --resnapshot: start a clean one
        if run.get("status") != RESNAPSHOT:
            say("the previous snapshot was interrupted: publishing a new one (replicas empty their tables)")
        with db:
            state.write_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME, {**run, "status": "abandoned"})
        keeper.stop_keeper(int(run.get("keeper_pid") or 0))
        drop_slot(dsn, names.slot, missing_ok=True)
    kept = keeper.start_keeper(dsn=dsn, slot=names.slot, replica=state_path)
    with dsnlib.connect(dsn, autocommit=True) as conn:
        change = slot_change(conn, names.slot)
    with db:
        if not any(c.undo_sql == change.undo_sql for c in state.read_source_changes(db)):
            state.record_source_changes(db, [change])
        state.write_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME, {
            "snapshot": kept.snapshot, "consistent_lsn": kept.consistent_lsn, "status": "copying",
            "keeper_pid": kept.pid})
    tables = published_tables(dsn, names.publication)
    n = parting.partitions if parting else 1
    _send_everywhere(producer, topic, n, records.control_record(
        "snapshot-begin", slot=names.slot, publication=names.publication, database=ident.database,
        system_identifier=ident.system_identifier, snapshot_lsn=kept.consistent_lsn,
        tables=[f"{s}.{t}" for s, t in tables],
        partitioning=parting.describe() if parting else {"column": None, "partitions": 1}))
    rows = _publish_snapshot(dsn, kept.snapshot, kept.consistent_lsn, tables, producer, topic, say, parting)
    _send_everywhere(producer, topic, n, records.control_record("snapshot-end", snapshot_lsn=kept.consistent_lsn))
    producer.flush()
    with db:
        state.write_position(db, state.Position(commit_lsn=kept.consistent_lsn, end_lsn=kept.consistent_lsn))
        state.write_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME, {
            "snapshot": kept.snapshot, "consistent_lsn": kept.consistent_lsn, "status": "done",
            "keeper_pid": kept.pid})
    keeper.stop_keeper(kept.pid)
    return rows


def _partitioning(db: apsw.Connection, dsn: str, publication: str, *, column: str | None,
                  partitions: int) -> TenantPartitioning | None:
    """The tenant partitioning asked for, checked against the one this publisher started with."""
    parting = (discover(dsn, published_tables(dsn, publication), column=column, partitions=partitions)
               if column else None)
    want = parting.describe() if parting else {"column": None, "partitions": 1}
    have = state.read_record(db, *PARTITIONING)
    if have is None:
        with db:
            state.write_record(db, *PARTITIONING, want)
    elif have != want:
        raise ConfigError(f"this publisher's topic is partitioned as {have} but {want} was asked: keep the "
                          "same --tenant-column/--partitions, or publish to a new --topic-prefix with a new --state")
    return parting


def run_publisher(*, dsn: str, bootstrap: str, topic_prefix: str = "pg2edge", tables: str | Sequence[str] | None = None,
                  state_path: str | Path = DEFAULT_STATE, allow_replica_identity_full: bool = False,
                  until_caught_up: bool = False, heartbeat_interval: float = 1.0, max_wait: float = 0.2,
                  producer: Producer | None = None, producer_options: dict[str, Any] | None = None,
                  client: str = "kafka-python", resnapshot: bool = False, tenant_column: str | None = None,
                  partitions: int = 1, stop: threading.Event | None = None, say: Callable[[str], None] = print,
                  metrics: Metrics | None = None) -> PublishReport:
    """Publish the snapshot (once, or again with ``resnapshot``), then every committed change, until stopped
    (or caught up). A re-snapshot takes a new slot and makes every replica of the topic empty and reload.

    ``tenant_column``: partition the topic by that column's value into ``partitions`` partitions."""
    state_path = str(state_path)
    preflight.check_source(dsn, new_slot=False, new_publication=False)  # wal_level, REPLICATION: before any file
    db = open_state(state_path)
    flag = StopFlag(stop)
    restore = flag.install()
    own_producer = producer is None
    try:
        sysid = identify_system(dsn)
        ident = state.SourceIdentity(system_identifier=sysid.system_identifier, database=sysid.database)
        state.check_source(db, ident)
        topic = records.topic_name(topic_prefix, ident.database)
        report = PublishReport(topic=topic)
        names = stream_names(db, slot=None, publication=None)
        if state.read_stream(db) is None:
            preflight.check_source(dsn, new_slot=True, new_publication=True)
            preflight.check_tables(dsn, tables=tables, allow_replica_identity_full=allow_replica_identity_full)
            result = setup_publication(dsn, publication=names.publication, tables=tables,
                                       allow_replica_identity_full=allow_replica_identity_full, replica=db)
            for change in result.changes:
                say(f"source change: {change.description} (undo: {change.undo_sql})")
            with db:
                state.write_source(db, ident)
                state.write_stream(db, names)
        parting = _partitioning(db, dsn, names.publication, column=tenant_column, partitions=partitions)
        n = parting.partitions if parting else 1
        ensure_topic(bootstrap, topic, partitions=n)
        producer = producer or make_producer(client, bootstrap, **(producer_options or {}))
        run = state.read_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME)
        if resnapshot and run and run.get("status") == "done":
            say(f"--resnapshot: publishing a new snapshot to {topic} (every replica empties its tables and reloads)")
            with db:
                run = {**run, "status": RESNAPSHOT, "keeper_pid": None}  # that keeper ended: signal no stale pid
                state.write_record(db, keeper.RUN_SCOPE, keeper.RUN_NAME, run)
        if not run or run.get("status") != "done":
            report.snapshot_rows = _snapshot(dsn, db, state_path, names, ident, producer, topic, say, parting)
            say(f"snapshot: {report.snapshot_rows} rows published to {topic}")
        pos = state.read_position(db)
        assert pos is not None
        goal = current_wal_lsn(dsn) if until_caught_up else None
        stream = ReplicationStream(dsn, slot=names.slot, publications=[names.publication], start_lsn=pos.end_lsn)
        source = CdcSource(stream)
        heart = Heartbeater(dsn, interval=heartbeat_interval)
        acked = pos.end_lsn
        probe = StreamProbe(metrics, dsn=dsn, slot=names.slot, position=pos)
        try:
            while True:
                heart.maybe_beat()
                probe.start_batch()
                batch = source.batch(max_wait=max_wait)
                if batch:
                    for txn in batch:
                        for p, part in parting.split(txn).items() if parting else ((0, txn),):
                            for k, v, h in records.transaction_records(part):
                                producer.send(topic, value=v, key=k, headers=h, partition=p)
                        report.events += len(txn.events)
                    producer.flush()  # acks=all for everything up to the batch's last commit
                    last = batch[-1]
                    source.ack(last.end_lsn)
                    acked = last.end_lsn
                    with db:
                        state.write_position(db, state.Position(commit_lsn=last.commit_lsn, end_lsn=last.end_lsn,
                                                                xid=last.xid, commit_ts_ms=last.commit_ts))
                    report.transactions += len(batch)
                    probe.batch_done(batch)
                beat = source.ack_heartbeat()
                if beat is not None:
                    acked = max(acked, beat)
                    _send_everywhere(producer, topic, n, records.control_record("heartbeat", lsn=beat))
                    producer.flush()
                probe.turn(reached_lsn=acked, server_wal_end=stream.server_wal_end)
                reason = flag.stop_reason(caught_up=goal is not None and acked >= goal)
                if reason:
                    report.stopped_by = reason
                    break
        finally:
            heart.close()
            source.close()
        report.acked_lsn = acked
        log.info("publisher stopped at %s", format_lsn(acked))
        return report
    finally:
        restore()
        if own_producer and producer is not None:
            producer.close()
        db.close()
