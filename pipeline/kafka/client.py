"""The transport interface (``Producer``/``Consumer``) and its kafka-python implementation.

pg2edge stores consumed offsets in each replica (with the data), so consumers
use ``assign`` + ``seek`` and never wait for a consumer-group rebalance; the
group name is only used to commit advisory offsets for monitoring tools.
Another client (e.g. confluent-kafka) plugs in by implementing the protocols.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition, codec
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from pg2edge.errors import ConfigError, Pg2EdgeError

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class TransportError(Pg2EdgeError):
    """The Kafka broker refused or lost a send, or could not be reached."""


class TopicMissingError(TransportError):
    """The topic does not exist (yet): consumers never create topics, the publisher does."""


class PartitionCountError(ConfigError):
    """The topic exists with another partition count than the one it must have."""


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


class Producer(Protocol):
    def send(self, topic: str, *, value: bytes, key: bytes | None = None, headers: Headers = (),
             partition: int = 0) -> None: ...

    def acked(self) -> int:
        """How many of the records sent so far are acknowledged by the broker (acks=all), counted from the first
        send: every record before that count is acknowledged. Never blocks; raises TransportError if one failed."""

    def flush(self) -> None:
        """Block until every send so far is acknowledged by the broker (acks=all); raise if one failed."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has (raise TransportError if it does not exist)."""

    def seek(self, topic: str, partition: int, offset: int) -> None: ...

    def poll(self, *, timeout: float, max_records: int = 5000) -> list[Record]: ...

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(earliest available offset, offset of the next record to be written) of the partition."""

    def commit(self, topic: str, partition: int, offset: int) -> None:
        """Advisory: record ``offset`` as the group's next offset (the replica's own state is the truth)."""

    def close(self) -> None: ...


# -- kafka-python -------------------------------------------------------------------
PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "linger_ms": 5, "batch_size": 512 * 1024,
                                     "max_request_size": 16 * 1024 * 1024, "compression_type": None,
                                     "retries": 5, "max_in_flight_requests_per_connection": 1}


PREFERRED_COMPRESSION = ("zstd", "lz4", "gzip")  # by measurement (BENCHMARKS.md): the first one installed


def default_compression(envelope: str) -> str:
    """The producer compression for ``envelope``: batch records are compressed (zstd: the smallest records at
    under 1 us per change; else lz4, else gzip, which is built in); per-row records are not."""
    if envelope != "batch":
        return "none"
    available = {"zstd": codec.has_zstd(), "lz4": codec.has_lz4(), "gzip": codec.has_gzip()}
    return next(c for c in PREFERRED_COMPRESSION if available.get(c))


def ensure_topic(bootstrap: str, topic: str, *, partitions: int = 1) -> None:
    """Create ``topic`` with ``partitions`` partitions if it does not exist; refuse one with another count."""

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pg2edge-admin")
    except KafkaError as exc:
        raise TransportError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        if topic in admin.list_topics():
            have = _partition_count(admin, topic)
            if have != partitions:
                raise TransportError(
                    f"topic {topic} has {have} partition(s) but {partitions} are needed "
                    "(one per stream, or --partitions when partitioned by tenant): publish to a new "
                    "--topic-prefix, or delete the topic")
            return
        admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)])
        log.info("created topic %s", topic)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def _partition_count(admin: Any, topic: str) -> int:
    (desc,) = admin.describe_topics([topic])
    return len(desc["partitions"])


class KafkaPythonProducer:
    """kafka-python producer: acks=all, one in-flight request (order kept on retries)."""

    def __init__(self, bootstrap: str, **options: Any) -> None:

        self._kafka_error = KafkaError
        try:
            self._producer = KafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_DEFAULTS, **options})
        except KafkaError as exc:
            raise TransportError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        self._pending: deque[Any] = deque()  # the futures of the records not yet counted as acknowledged
        self._acked = 0

    def send(self, topic: str, *, value: bytes, key: bytes | None = None, headers: Headers = (),
             partition: int = 0) -> None:
        self._pending.append(self._producer.send(topic, value=value, key=key, headers=list(headers),
                                                 partition=partition))

    def acked(self) -> int:
        pending = self._pending
        while pending and pending[0].is_done:
            fut = pending.popleft()
            if fut.failed():
                raise TransportError(f"a record was not acknowledged by the broker: {fut.exception!r}")
            self._acked += 1
        return self._acked

    def flush(self) -> None:
        self._producer.flush()
        self.acked()
        if self._pending:
            raise TransportError(f"{len(self._pending)} record(s) still unacknowledged after a flush")

    def close(self) -> None:
        self._producer.close()


class KafkaPythonConsumer:
    """kafka-python consumer on explicitly assigned partitions (no group join)."""

    def __init__(self, bootstrap: str, *, group: str | None = None, **options: Any) -> None:
        # fetch_max_wait_ms=10, by measurement (2026-12-02, issue 15, Tansu memory broker, kafka-python): the
        # broker answers a fetch at once when records are there, else holds it for the whole wait even if a
        # record arrives meanwhile (at 100 ms the publisher-ack -> replica-applied stage grew from ~8 to ~30 ms
        # median). 4 ms shortened that stage by ~1.5 ms at 1k TPS, but an idle replica then spends 20% of a core
        # fetching instead of 12% (2 ms: 28%): kept at 10 ms.
        try:
            self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                           auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                           fetch_max_bytes=32 * 1024 * 1024, fetch_max_wait_ms=10,
                                           allow_auto_create_topics=False,  # only the publisher creates topics
                                           **options)
        except KafkaError as exc:
            raise TransportError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        self._group = group
        self._assigned: set[Any] = set()

    def partition_count(self, topic: str) -> int:
        # kafka-python asks for every topic's metadata here, which never creates one. A request that names the
        # topic (assign + fetch, offsets) may: Tansu auto-creates it even with allow_auto_create_topics=False
        # (measured), so a replica names the topic only once this says it exists (wait_for_topic).
        try:
            parts = self._consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            raise TransportError(f"cannot read the metadata of topic {topic}: {exc}") from exc
        if not parts:
            raise TopicMissingError(f"topic {topic} does not exist (has `pg2edge publish` run?)")
        return len(parts)

    def seek(self, topic: str, partition: int, offset: int) -> None:

        tp = TopicPartition(topic, partition)
        if tp not in self._assigned:
            self._assigned.add(tp)
            self._consumer.assign(sorted(self._assigned))
        self._consumer.seek(tp, offset)

    def poll(self, *, timeout: float, max_records: int = 5000) -> list[Record]:
        got = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        out = []
        for tp, records in got.items():
            for r in records:
                out.append(Record(topic=tp.topic, partition=tp.partition, offset=r.offset, key=r.key,
                                  value=r.value, headers=dict(r.headers or ())))
        out.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return out

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:

        tp = TopicPartition(topic, partition)
        try:
            return int(self._consumer.beginning_offsets([tp])[tp]), int(self._consumer.end_offsets([tp])[tp])
        except KafkaError as exc:
            raise TransportError(f"cannot read the offsets of topic {topic} partition {partition}: {exc}") from exc

    def commit(self, topic: str, partition: int, offset: int) -> None:
        if not self._group:
            return

        try:
            self._consumer.commit({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)})
        except (KafkaError, TypeError) as exc:  # advisory only
            log.debug("advisory offset commit failed: %s", exc)

    def close(self) -> None:
        self._consumer.close()


def wait_for_topic(consumer: Consumer, topic: str, *, partitions: int | None = None,
                   stopped: Callable[[], object] = lambda: False, say: Callable[[str], None] = print,
                   interval: float = 1.0, remind: float = 30.0) -> int:
    """The partition count of ``topic`` once it exists (a replica started before the publisher waits here,
    saying which topic it waits for); 0 if ``stopped()`` first. ``partitions``: the count it must have."""
    said = 0.0
    while True:
        try:
            n = consumer.partition_count(topic)
        except TopicMissingError:
            if stopped():
                return 0
            now = time.monotonic()
            if now - said >= remind:
                say(f"waiting for topic {topic} (it is created by `pg2edge publish`)")
                said = now
            time.sleep(interval)
            continue
        if partitions is not None and n != partitions:
            raise PartitionCountError(
                f"topic {topic} has {n} partition(s) but this replica reads a topic of {partitions}: if "
                "`pg2edge publish --tenant-column` wrote it, consume it with `sync --from-kafka --tenant-pattern`; "
                "if the broker created it (auto.create.topics.enable, e.g. for an older consumer), delete the "
                "topic and let `pg2edge publish` create it")
        return n


CLIENTS = ("kafka-python", "confluent")


def make_producer(client: str, bootstrap: str, **options: Any) -> Producer:
    """A producer of the named client (``kafka-python`` or ``confluent``)."""
    if client == "confluent":
        from pg2edge.pipeline.kafka.confluent import ConfluentProducer

        return ConfluentProducer(bootstrap, **options)
    return KafkaPythonProducer(bootstrap, **options)


def make_consumer(client: str, bootstrap: str, *, group: str | None = None) -> Consumer:
    if client == "confluent":
        from pg2edge.pipeline.kafka.confluent import ConfluentConsumer

        return ConfluentConsumer(bootstrap, group=group)
    return KafkaPythonConsumer(bootstrap, group=group)
