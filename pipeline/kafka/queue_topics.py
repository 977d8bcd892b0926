"""The replica's retry queue and DLQ mirrored to ``<topic>.retry`` and ``<topic>.dlq``.

The queue itself lives in the replica (``_pg2edge_queue``), committed with the
data, so per-key blocking and exactly-once hold whatever Kafka does. These
topics make it visible to other consumers and alerting: each time a queued
change enters the queue or changes status, one record is produced — to
``.retry`` while it waits (``retry``/``waiting``), to ``.dlq`` once it is dead.
Delivery is at least once (a restarted replica re-announces its queue).
``pg2edge publish`` creates both topics beside the data topic; a replica never
creates a topic (issue 15): where they are missing (a topic written by an older
publisher) it says so once, by name, and the queue stays readable in the
replica (``pg2edge dlq list``).
Value: ``QueuedChange.as_dict()`` plus ``replica`` (the consumer group or the
file name) and the change event envelope; key: the queued change's keys.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import apsw
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from pg2edge.pipeline.kafka.client import Producer, ensure_topic, make_producer
from pg2edge.pipeline.sinks.retry import list_queue

log = logging.getLogger(__name__)

RETRY_SUFFIX = ".retry"
DLQ_SUFFIX = ".dlq"
RECHECK_SECONDS = 60.0  # how often a replica looks again for mirror topics that were missing


def mirror_topics(topic: str) -> tuple[str, str]:
    return topic + RETRY_SUFFIX, topic + DLQ_SUFFIX


def ensure_mirror_topics(bootstrap: str, topic: str) -> None:
    """The publisher creates the replicas' retry and DLQ topics beside the data topic."""
    for name in mirror_topics(topic):
        ensure_topic(bootstrap, name)


def _existing(bootstrap: str, names: tuple[str, ...]) -> set[str]:
    """Which of ``names`` exist (an admin metadata request: never creates a topic)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pg2edge-admin")
    except KafkaError:
        return set()
    try:
        return set(names) & set(admin.list_topics())
    finally:
        admin.close()


class QueueMirror:
    def __init__(self, *, bootstrap: str, topic: str, replica: str, client: str = "kafka-python",
                 producer: Producer | None = None) -> None:
        self.retry_topic, self.dlq_topic = mirror_topics(topic)
        self.bootstrap, self.replica = bootstrap, replica
        self.producer = producer or make_producer(client, bootstrap)
        self.announced: dict[int, str] = {}
        self._ready = False
        self._checked = -RECHECK_SECONDS
        self._said = False

    def _topics_ready(self) -> bool:
        if self._ready or time.monotonic() - self._checked < RECHECK_SECONDS:
            return self._ready
        self._checked = time.monotonic()
        missing = sorted({self.retry_topic, self.dlq_topic} - _existing(self.bootstrap, (self.retry_topic,
                                                                                          self.dlq_topic)))
        self._ready = not missing
        if missing and not self._said:
            self._said = True
            log.warning("topic(s) %s do not exist: the retry queue and DLQ are not mirrored to Kafka (they stay "
                        "in the replica: `pg2edge dlq list`); `pg2edge publish` creates them, a replica never does",
                        ", ".join(missing))
        return self._ready

    def sync(self, conn: apsw.Connection) -> int:
        """Produce a record for every queued change that is new or changed status; returns how many."""
        sent = 0
        changes = [c for c in list_queue(conn) if self.announced.get(c.id) != c.status]
        if not changes or not self._topics_ready():
            return 0
        for change in changes:
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
