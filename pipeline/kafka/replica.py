"""A replica fed from the Kafka topic: regroup whole transactions, apply them exactly once.

The consumed offset and the commit LSN are stored in the replica's state table
(``Position.kafka = {topic, partition, offset}``) in the same SQLite
transaction as the data; on start the consumer seeks to the next offset
(``assign`` + ``seek``; committed group offsets are advisory only). Records
re-sent by a restarted publisher are skipped by the LSN check. The schema
(tables, value codec options, table selection) comes from the topic's schema
records (:mod:`pipeline.kafka.schema`), kept in the replica's state table, so a
replica needs only the broker; a topic written before schema records existed
still replays with ``dsn`` (the schema is then read from the source catalog).
Changes that cannot be applied go to the retry queue / DLQ
(:mod:`pipeline.sinks.retry`); so do records the replica cannot read (not
pg2edge's, a newer format), named by topic, partition and offset. A replica
started before the publisher waits for the topic (consumers never create
topics). The engine pairs a :class:`KafkaSource` with a :class:`SqliteSink`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apsw

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import engine, schema_model, state
from pg2edge.pipeline.engine import EngineReport, StopFlag
from pg2edge.pipeline.events import Control, SchemaChange, SchemaRecord, Unreadable
from pg2edge.pipeline.kafka import records, schema
from pg2edge.pipeline.kafka.bootstrap import seed_replica
from pg2edge.pipeline.kafka.client import Consumer, make_consumer, wait_for_topic
from pg2edge.pipeline.kafka.queue_topics import QueueMirror
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.sinks.retry import QUEUE_TABLE, RetryPolicy
from pg2edge.pipeline.sinks.sqlite import Applier, SqliteSink, open_replica
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.cdc import current_wal_lsn
from pg2edge.pipeline.sources.kafka import KafkaSource
from pg2edge.pipeline.sources.replication import identify_system
from pg2edge.translators.modeljson import table_to_json
from pg2edge.translators.quoting import quote_ident

log = logging.getLogger(__name__)


@dataclass
class ReplicaReport(EngineReport):
    topic: str = ""
    parked: int = 0


class _MirroredSink(SqliteSink):
    """A Kafka replica's sink: tables from the topic's schema records; unreadable records parked in the DLQ;
    its retry queue and DLQ are also mirrored to ``<topic>.retry``/``.dlq``."""

    mirror: QueueMirror | None = None
    topic_schema: schema.TopicSchema

    def _use(self, mappings: Mapping[tuple[str, str], TableMapping]) -> Applier:
        applier = super()._use(mappings)
        applier.can_recopy = False  # no source access: a change that needs a re-copy pauses its table by name
        applier.after_schema_change = self._followed
        return applier

    def _followed(self, change: SchemaChange) -> None:
        """The stored schema (the topic's schema records, merged) follows a schema change applied at its
        position, in the same transaction: renamed and dropped tables leave it, changed ones get their shape."""
        stored = state.read_record(self.conn, schema.SCOPE, schema.NAME)
        if stored is None or self.applier is None:
            return
        mapped = {f"{s}.{t}" for s, t in self.applier.mappings}
        tables = {f"{t['schema']}.{t['name']}": t for t in stored["model"]["tables"]}
        tables = {q: t for q, t in tables.items() if q in mapped}
        for d in schema_model.describe(change).values():
            if d.table.qualified in mapped:
                tables[d.table.qualified] = table_to_json(d.table)
        selection = [q for q in stored.get("selection", []) if q in mapped]
        selection += sorted(q for q in tables if q not in selection)
        state.write_record(self.conn, schema.SCOPE, schema.NAME,
                           {**stored, "selection": selection, "model": {**stored["model"], "tables": list(tables.values())}})

    def control(self, item: Control) -> None:
        if isinstance(item, SchemaRecord):
            self._schema_record(item)
        elif isinstance(item, Unreadable):
            park_record(self.conn, item, label=self.label)
            self.queue.parked += 1
        else:
            super().control(item)

    def _schema_record(self, item: SchemaRecord) -> None:
        with self.conn:
            merged = store_schema_record(self.conn, item, label=self.label)
            if merged is None:
                self.queue.parked += 1
            elif item.document.get("reason") != "snapshot" and self.applier is not None:  # a shape changed
                self.applier.mappings.update(self.topic_schema.apply(self.conn, merged))
                self.applier.forget_tables()

    def maintain(self) -> None:
        super().maintain()
        if self.mirror is not None and (self.mirror.announced or any(self.queue_depths().values())):
            self.mirror.sync(self.conn)


def store_schema_record(conn: apsw.Connection, item: SchemaRecord, *, label: str) -> dict[str, Any] | None:
    """Merge a schema record into the schema ``conn`` keeps (:func:`schema.merge`; caller's transaction) and
    return the whole schema now; a record this version cannot read is parked by topic, partition and offset
    (:func:`park_record`) and None returned."""
    doc = item.document
    try:
        schema.check(doc)
    except schema.SchemaRecordError as exc:
        cursor = item.cursor or {}
        where = f"topic {cursor.get('topic')} partition {cursor.get('partition')} offset {cursor.get('offset')}"
        park_record(conn, Unreadable(where, str(exc), {"kafka": dict(cursor), "value": dict(doc)},
                                     cursor=item.cursor), label=label)
        return None
    stored = None if doc.get("reason") == "snapshot" else state.read_record(conn, schema.SCOPE, schema.NAME)
    merged = schema.merge(stored, doc)
    state.write_record(conn, schema.SCOPE, schema.NAME, merged)
    return merged


def park_record(conn: apsw.Connection, item: Unreadable, *, label: str) -> None:
    """Park a record the replica cannot read in its dead-letter queue (``pg2edge dlq list`` / ``status`` show it),
    together with the position past it: never applied, never skipped silently."""
    log.error("%s: cannot read the record at %s: %s; parked in the dead-letter queue (pg2edge dlq list)",
              label, item.where, item.reason)
    now = time.time()
    with conn:
        conn.execute(
            f"INSERT INTO {quote_ident(QUEUE_TABLE)} (status, source_table, keys, commit_lsn, event, error, attempts, "
            "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)",
            ("dead", f"kafka record ({item.where})", json.dumps([f"kafka:{item.where}"]),
             0, json.dumps(dict(item.raw)), f"{item.where}: {item.reason}", now, now))
        pos = state.read_position(conn)
        if pos is not None and item.cursor is not None:
            state.write_position(conn, replace(pos, kafka=dict(item.cursor)))


@dsnlib.control_session()  # one control connection to the source for the whole run
def run_kafka_replica(*, bootstrap: str, target: str | Path, dsn: str | None = None, topic: str | None = None,
                      group: str | None = None, topic_prefix: str = "pg2edge", options: TranslateConfig | None = None,
                      policy: RetryPolicy | None = None, until_caught_up: bool = False, until_lsn: int | None = None,
                      idle_seconds: float = 2.0,
                      stop: threading.Event | None = None, consumer: Consumer | None = None,
                      client: str = "kafka-python", max_records: int = 5000, seed_from: str | Path | None = None,
                      say: Callable[[str], None] = print, metrics: Metrics | None = None) -> ReplicaReport:
    """Consume the change topic into ``target`` until stopped.

    ``until_lsn``: stop once the replica has applied (or, by a heartbeat, seen) that source LSN.
    ``until_caught_up``: stop at the source's current LSN (with ``dsn`` and a running publisher),
    or once the topic brought no row change for ``idle_seconds`` (the publisher may be stopped) after every
    record that was in the topic at start was read. ``dsn`` is optional: the schema travels in the topic.
    A topic that does not exist yet is waited for (started before the publisher).
    ``seed_from``: create the (new) ``target`` as a copy of this live replica first, then continue from its
    offset. Records the replica needs that the topic no longer holds stop it with a named error
    (:mod:`pipeline.kafka.bootstrap`).
    """
    options = options or TranslateConfig()
    if topic is None:
        if dsn is None:
            raise ConfigError("give --topic or --source (the topic is <prefix>.<database>.changes)")
        topic = records.topic_name(topic_prefix, identify_system(dsn).database)
    report = ReplicaReport(topic=topic)
    goal = until_lsn
    if until_caught_up and goal is None and dsn is not None:
        goal = current_wal_lsn(dsn)
    if seed_from is not None:
        ident = None
        if dsn is not None:
            sysid = identify_system(dsn)
            ident = state.SourceIdentity(system_identifier=sysid.system_identifier, database=sysid.database)
        seeded = seed_replica(seed=seed_from, target=target, topic=topic, source=ident)
        say(f"seeded {target} from {seed_from} at offset {seeded.kafka['offset'] if seeded.kafka else '-'}")
    db = open_replica(target)
    flag = StopFlag(stop)
    restore = flag.install()
    own = consumer is None
    consumer = consumer or make_consumer(client, bootstrap, group=group)
    sink: _MirroredSink | None = None
    try:
        topic_schema = schema.TopicSchema()

        def mappings_for(publication: str) -> dict[tuple[str, str], TableMapping]:
            doc = state.read_record(db, schema.SCOPE, schema.NAME)
            if doc is not None:
                return topic_schema.apply(db, doc, say=say)
            if dsn is None:
                raise ConfigError(f"topic {topic} carries no schema record (written by an older `pg2edge publish`): "
                                  "give --source (read-only catalog access) for the schema and codec")
            return build_mappings(dsn, db, publication, options)

        names = state.read_stream(db)
        sink = _MirroredSink(db, mappings_for(names.publication) if names is not None else None,
                             label=f"{target} (topic {topic})", policy=policy, mappings_for=mappings_for)
        sink.topic_schema = topic_schema
        if not wait_for_topic(consumer, topic, partitions=1, stopped=lambda: flag.stopped, say=say):
            report.stopped_by = flag.stopped or "stopped"
            return report
        sink.mirror = QueueMirror(bootstrap=bootstrap, topic=topic, replica=group or Path(target).name, client=client)
        pos = state.read_position(db)
        stored = int(pos.kafka["offset"]) if pos and pos.kafka and pos.kafka.get("topic") == topic else None
        source = KafkaSource(consumer, topic, stored_offsets={0: stored}, until_caught_up=until_caught_up,
                             until_lsn=goal, idle_seconds=idle_seconds, max_records=max_records, group=group)
        say(f"consuming {topic} from offset {source.guards[0].expected}")
        engine.run(source, sink, flag=flag, report=report, max_wait=0.2, metrics=metrics, say=say)
        report.parked = sink.parked
        return report
    finally:
        restore()
        if sink is not None and sink.mirror is not None:
            sink.mirror.close()
        if own:
            consumer.close()
        db.close()
