"""The replica's retry queue and DLQ mirrored to ``<topic>.retry`` and ``<topic>.dlq``.

The queue itself lives in the replica (``_pg2edge_queue``), committed with the
data, so per-key blocking and exactly-once hold whatever Kafka does. These
topics make it visible to other consumers and alerting: each time a queued
change enters the queue or changes status, one record is produced — to
``.retry`` while it waits (``retry``/``waiting``), to ``.dlq`` once it is dead.
Delivery is at least once (a restarted replica re-announces its queue).
Value: ``QueuedChange.as_dict()`` plus ``replica`` (the consumer group or the
file name) and the change event envelope; key: the queued change's keys.
"""

from __future__ import annotations

import json
import time
from typing import Any

import apsw
from kafka import KafkaConsumer, TopicPartition

from pg2edge.pipeline.kafka.client import Producer, ensure_topic, make_producer
from pg2edge.pipeline.sinks.retry import list_queue

RETRY_SUFFIX = ".retry"
DLQ_SUFFIX = ".dlq"


class QueueMirror:
    def __init__(self, *, bootstrap: str, topic: str, replica: str, client: str = "kafka-python",
                 producer: Producer | None = None) -> None:
        self.retry_topic, self.dlq_topic = topic + RETRY_SUFFIX, topic + DLQ_SUFFIX
        for name in (self.retry_topic, self.dlq_topic):
            ensure_topic(bootstrap, name)
        self.replica = replica
        self.producer = producer or make_producer(client, bootstrap)
        self.announced: dict[int, str] = {}

    def sync(self, conn: apsw.Connection) -> int:
        """Produce a record for every queued change that is new or changed status; returns how many."""
        sent = 0
        for change in list_queue(conn):
            if self.announced.get(change.id) == change.status:
                continue
            topic = self.dlq_topic if change.status == "dead" else self.retry_topic
            value = {**change.as_dict(), "replica": self.replica, "event": change.event}
            self.producer.send(topic, value=json.dumps(value, sort_keys=True).encode(),
                               key=json.dumps(change.keys).encode(),
                               headers=(("pg2edge.queue_status", change.status.encode()),))
            self.announced[change.id] = change.status
            sent += 1
        if sent:
            self.producer.flush()
        return sent

    def close(self) -> None:
        self.producer.close()


def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every record value of a mirror topic (operators' and tests' view)."""

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        out: list[dict[str, Any]] = []

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            if not batch and out:
                break
            for records in batch.values():
                out += [json.loads(r.value) for r in records]
        return out
    finally:
        consumer.close()
