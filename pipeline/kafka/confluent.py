"""The confluent-kafka (librdkafka) implementation of the transport protocols (optional extra)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from pg2edge.pipeline.kafka.client import Headers, Record, TopicMissingError, TransportError

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "linger.ms": 5, "batch.num.messages": 10_000,
                                     "queue.buffering.max.messages": 1_000_000, "enable.idempotence": False,
                                     "max.in.flight.requests.per.connection": 1,  # order kept on retries
                                     "message.max.bytes": 16 * 1024 * 1024}


def _module() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:
        raise TransportError("the confluent client needs `pip install 'pg2edge[confluent]'` "
                             "(confluent-kafka)") from exc
    return confluent_kafka


class ConfluentProducer:
    def __init__(self, bootstrap: str, **options: Any) -> None:
        ck = _module()
        conf = {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap}
        for k, v in options.items():  # accept the kafka-python spellings used by the CLI
            if k == "linger_ms":
                conf["linger.ms"] = v
            elif k == "compression_type":
                conf["compression.type"] = v or "none"
            else:
                conf[k] = v
        self._producer = ck.Producer(conf)
        self._error: Any = None
        self._sent = 0  # sequence number of the next send
        self._acked = 0  # every send below this number is acknowledged
        self._done: set[int] = set()  # acknowledged sends above it (reports may arrive out of order across partitions)

    def _delivered(self, seq: int, err: Any, _msg: Any) -> None:
        if err is not None:
            if self._error is None:
                self._error = err
        else:
            self._done.add(seq)

    def send(self, topic: str, *, value: bytes, key: bytes | None = None, headers: Headers = (),
             partition: int = 0) -> None:
        seq = self._sent
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers), partition=partition,
                                       on_delivery=functools.partial(self._delivered, seq))
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
        self._sent += 1

    def acked(self) -> int:
        self._producer.poll(0)  # serve the delivery reports that arrived
        if self._error is not None:
            raise TransportError(f"a record was not acknowledged by the broker: {self._error}")
        while self._acked in self._done:
            self._done.discard(self._acked)
            self._acked += 1
        return self._acked

    def flush(self) -> None:
        left = self._producer.flush(60)
        err, self._error = self._error, None
        if left or err is not None:
            raise TransportError(f"records not acknowledged by the broker ({left} pending): {err}")
        self.acked()

    def close(self) -> None:
        self._producer.flush(10)


class ConfluentConsumer:
    def __init__(self, bootstrap: str, *, group: str | None = None, **options: Any) -> None:
        ck = _module()
        self._ck = ck
        self._group = group
        self._consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group or "pg2edge-unmanaged",
                                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                      "fetch.max.bytes": 32 * 1024 * 1024, "fetch.wait.max.ms": 10,
                                      "allow.auto.create.topics": False, **options})
        self._assigned: dict[tuple[str, int], int] = {}

    def partition_count(self, topic: str) -> int:
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicMissingError(f"topic {topic} does not exist (has `pg2edge publish` run?)")
        return len(meta.partitions)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._assigned[(topic, partition)] = offset
        self._consumer.assign([self._ck.TopicPartition(t, p, o) for (t, p), o in self._assigned.items()])

    def poll(self, *, timeout: float, max_records: int = 5000) -> list[Record]:
        out = []
        # consume() waits for num_messages or the timeout: wait for one, then take what is there
        first = self._consumer.consume(num_messages=1, timeout=timeout)
        more = self._consumer.consume(num_messages=max_records - 1, timeout=0) if first else []
        for m in first + more:
            if m.error() is not None:
                if m.error().code() == self._ck.KafkaError._PARTITION_EOF:
                    continue
                raise TransportError(f"consuming {m.topic()}: {m.error()}")
            out.append(Record(topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key(),
                              value=m.value(), headers=dict(m.headers() or ())))
        return out

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(self._ck.TopicPartition(topic, partition), timeout=10,
                                                             cached=False)
        except self._ck.KafkaException as exc:
            raise TransportError(f"cannot read the offsets of topic {topic} partition {partition}: {exc}") from exc
        return int(low), int(high)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        if not self._group:
            return
        try:
            self._consumer.commit(offsets=[self._ck.TopicPartition(topic, partition, offset)], asynchronous=True)
        except self._ck.KafkaException as exc:  # advisory only
            log.debug("advisory offset commit failed: %s", exc)

    def close(self) -> None:
        self._consumer.close()
