"""A replica fed from the Kafka topic: regroup whole transactions, apply them exactly once.

The consumed offset and the commit LSN are stored in the replica's state table
(``Position.kafka = {topic, partition, offset}``) in the same SQLite
transaction as the data; on start the consumer seeks to the next offset
(``assign`` + ``seek``; committed group offsets are advisory only). Records
re-sent by a restarted publisher are skipped by the LSN check. The schema
(tables, value codec) is read from the source catalog (``dsn``); rows come
only from the topic. Changes that cannot be applied go to the retry queue /
DLQ (:mod:`pipeline.sinks.retry`). The engine pairs a :class:`KafkaSource` with a :class:`SqliteSink`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pg2edge import dsn as dsnlib
from pg2edge.config import TranslateConfig
from pg2edge.errors import ConfigError
from pg2edge.pipeline import engine, state
from pg2edge.pipeline.engine import EngineReport, StopFlag
from pg2edge.pipeline.kafka import records
from pg2edge.pipeline.kafka.bootstrap import seed_replica
from pg2edge.pipeline.kafka.client import Consumer, make_consumer
from pg2edge.pipeline.kafka.queue_topics import QueueMirror
from pg2edge.pipeline.mappings import build_mappings
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.sinks.retry import RetryPolicy
from pg2edge.pipeline.sinks.sqlite import SqliteSink, open_replica
from pg2edge.pipeline.sinks.statements import TableMapping
from pg2edge.pipeline.sources.cdc import current_wal_lsn
from pg2edge.pipeline.sources.kafka import KafkaSource
from pg2edge.pipeline.sources.replication import identify_system


@dataclass
class ReplicaReport(EngineReport):
    topic: str = ""
    parked: int = 0


class _MirroredSink(SqliteSink):
    """A Kafka replica's sink: its retry queue and DLQ are also mirrored to ``<topic>.retry``/``.dlq``."""

    mirror: QueueMirror | None = None

    def maintain(self) -> None:
        super().maintain()
        if self.mirror is not None and (self.mirror.announced or any(self.queue_depths().values())):
            self.mirror.sync(self.conn)


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
    ``until_caught_up``: stop at the source's current LSN (needs ``dsn`` and a running publisher),
    or once the topic brought no row change for ``idle_seconds`` (the publisher may be stopped) after every
    record that was in the topic at start was read.
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
        def mappings_for(publication: str) -> dict[tuple[str, str], TableMapping]:
            if dsn is None:
                raise ConfigError("a Kafka replica needs --source (read-only catalog access) for the schema and codec")
            return build_mappings(dsn, db, publication, options)

        names = state.read_stream(db)
        sink = _MirroredSink(db, mappings_for(names.publication) if names is not None else None,
                             label=f"{target} (topic {topic})", policy=policy, mappings_for=mappings_for)
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
