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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import preflight, state
from pg2edge.pipeline.ddl_capture import install_capture
from pg2edge.pipeline.engine import EngineReport, StopFlag
from pg2edge.pipeline.events import SnapshotBegin, Transaction
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.client import Producer, default_compression, ensure_topic, make_producer
from pg2edge.pipeline.kafka.partitioning import TenantPartitioning, discover
from pg2edge.pipeline.kafka.queue_topics import ensure_mirror_topics
from pg2edge.pipeline.kafka.schema import SchemaTracker
from pg2edge.pipeline.lsn import format_lsn
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.publication import setup_publication, slot_change
from pg2edge.pipeline.schema_model import record_baselines
from pg2edge.pipeline.sinks.kafka import KafkaSink
from pg2edge.pipeline.sources import keeper
from pg2edge.pipeline.sources.cdc import stream_slot
from pg2edge.pipeline.sources.replication import drop_slot, identify_system
from pg2edge.pipeline.sources.snapshot import published_tables, snapshot_items, stream_names

log = logging.getLogger(__name__)

DEFAULT_STATE = "pg2edge-publisher.db"
PARTITIONING = ("kafka", "partitioning")


@dataclass
class PublishReport(EngineReport):
    topic: str = ""
    events: int = 0
    acked_lsn: int = 0


def open_state(path: str | Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA journal_mode=WAL")
    state.ensure_state_table(conn)
    return conn


def _snapshot(dsn: str, db: apsw.Connection, state_path: str, names: state.StreamInfo,
              ident: state.SourceIdentity, sink: KafkaSink, say: Callable[[str], None]) -> int:
    """A new slot and exported snapshot, published through the sink (snapshot-begin, rows, snapshot-end)."""
    run = state.read_run(db)
    if run:  # an interrupted snapshot (its rows may be half published) or --resnapshot: start a clean one
        if run.status is not state.RunStatus.RESNAPSHOT:
            say("the previous snapshot was interrupted: publishing a new one (replicas empty their tables)")
        with db:
            state.write_run(db, replace(run, status=state.RunStatus.ABANDONED))
        keeper.stop_keeper(run.keeper_pid)
        drop_slot(dsn, names.slot, missing_ok=True, terminate_holder=True)
    else:  # a run that crashed before recording its snapshot may have left the slot behind
        drop_slot(dsn, names.slot, missing_ok=True, terminate_holder=True)
    kept = keeper.start_keeper(dsn=dsn, slot=names.slot, replica=state_path)
    with dsnlib.control(dsn) as conn:
        change = slot_change(conn, names.slot)
    with db:
        if not any(c.undo_sql == change.undo_sql for c in state.read_source_changes(db)):
            state.record_source_changes(db, [change])
        state.write_run(db, state.SnapshotRun(status=state.RunStatus.COPYING, snapshot=kept.snapshot,
                                              consistent_lsn=kept.consistent_lsn, keeper_pid=kept.pid))
    tables = published_tables(dsn, names.publication)
    begin = SnapshotBegin(slot=names.slot, publication=names.publication, database=ident.database,
                          system_identifier=ident.system_identifier, snapshot_lsn=kept.consistent_lsn,
                          tables=tuple(f"{s}.{t}" for s, t in tables),
                          partitioning=sink.parting.describe() if sink.parting else {"column": None, "partitions": 1})
    before = sink.snapshot_rows
    for item in snapshot_items(dsn, snapshot=kept.snapshot, begin=begin, tables=tables,
                               say=lambda line: say(line.replace(" rows", " rows published"))):
        assert not isinstance(item, Transaction)
        sink.control(item)
    with db:
        state.write_position(db, state.Position(commit_lsn=kept.consistent_lsn, end_lsn=kept.consistent_lsn))
        state.write_run(db, state.SnapshotRun(status=state.RunStatus.DONE, snapshot=kept.snapshot,
                                              consistent_lsn=kept.consistent_lsn, keeper_pid=kept.pid))
    keeper.stop_keeper(kept.pid)
    return sink.snapshot_rows - before


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


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_publisher(*, dsn: str, bootstrap: str, topic_prefix: str = "pg2edge", tables: str | Sequence[str] | None = None,
                  state_path: str | Path = DEFAULT_STATE, allow_replica_identity_full: bool = False,
                  until_caught_up: bool = False, heartbeat_interval: float = 1.0, max_wait: float = 0.2,
                  producer: Producer | None = None, producer_options: dict[str, Any] | None = None,
                  client: str = "kafka-python", resnapshot: bool = False, tenant_column: str | None = None,
                  partitions: int = 1, stop: threading.Event | None = None, say: Callable[[str], None] = print,
                  metrics: Metrics | None = None, envelope: str = "batch",
                  options: TranslateConfig | None = None) -> PublishReport:
    """Publish the snapshot (once, or again with ``resnapshot``), then every committed change, until stopped
    (or caught up): the engine pairing a :class:`CdcSource` with a :class:`KafkaSink`. A re-snapshot takes a
    new slot and makes every replica of the topic empty and reload.

    ``tenant_column``: partition the topic by that column's value into ``partitions`` partitions.
    ``envelope``: ``batch`` (many whole transactions per record; pg2edge's replicas) or ``row`` (one
    Debezium-style record per change, for other consumers). ``options``: the ``[translate]`` options the
    schema records carry (every replica builds its tables and codecs with them)."""
    if envelope not in records.ENVELOPES:
        raise ConfigError(f"--envelope {envelope!r}: choose one of {', '.join(records.ENVELOPES)}")
    options = options or TranslateConfig()
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
            # before the slot exists: no DDL after its consistent point goes unseen (schema changes travel
            # in the topic, inside their transactions)
            install_capture(dsn, slot=names.slot, replica=db, say=say)
            record_baselines(dsn, db, published_tables(dsn, names.publication))
        parting = _partitioning(db, dsn, names.publication, column=tenant_column, partitions=partitions)
        ensure_topic(bootstrap, topic, partitions=parting.partitions if parting else 1)
        ensure_mirror_topics(bootstrap, topic)  # the replicas' retry queue and DLQ; a replica creates no topic
        if producer is None:
            chosen = {"compression_type": default_compression(envelope), **(producer_options or {})}
            if chosen["compression_type"] == "none":
                chosen["compression_type"] = None
            producer = make_producer(client, bootstrap, **chosen)
        tracker = SchemaTracker(db, dsn, names.publication, options)
        sink = KafkaSink(producer, topic, state_db=db, partitioning=parting, envelope=envelope, schema=tracker)
        run = state.read_run(db)
        if resnapshot and run and run.status is state.RunStatus.DONE:
            say(f"--resnapshot: publishing a new snapshot to {topic} (every replica empties its tables and reloads)")
            with db:
                run = replace(run, status=state.RunStatus.RESNAPSHOT, keeper_pid=None)  # that keeper ended
                state.write_run(db, run)
        if not run or run.status is not state.RunStatus.DONE:
            report.snapshot_rows = _snapshot(dsn, db, state_path, names, ident, sink, say)
            say(f"snapshot: {report.snapshot_rows} rows published to {topic}")
        if not tracker.selection:  # a topic begun before schema records existed: replicas get one now
            sink.publish_schema(tracker.full_record(published_tables(dsn, names.publication)))
        pos = state.read_position(db)
        assert pos is not None
        snapshot_rows = report.snapshot_rows
        stream_slot(dsn, names, pos.end_lsn, sink, flag=flag, report=report, heartbeat_interval=heartbeat_interval,
                    until_caught_up=until_caught_up, max_wait=max_wait, metrics=metrics, say=say)
        report.snapshot_rows, report.events = snapshot_rows, sink.events
        report.acked_lsn = report.position.visible_lsn if report.position else 0
        log.info("publisher stopped at %s", format_lsn(report.acked_lsn))
        return report
    finally:
        restore()
        if own_producer and producer is not None:
            producer.close()
        db.close()
