"""Prometheus metrics of the sync daemons and the Kafka publisher (served on ``--metrics-port``).

Each daemon gets its own registry, so tests and several daemons in one
process never collide. A replica (``sync``, ``sync --from-kafka``,
``sync --tenant-pattern``) counts changes *applied*; the publisher
(``publish``) counts changes *published* (``pg2edge_published_changes``,
``pg2edge_batch_publish_seconds``) and has no retry queue or DLQ. Both report
lag (seconds, bytes) and the WAL their slot retains on the source.

The engine (:mod:`pg2edge.pipeline.engine`) feeds these once per batch and
turn, so the metric rules live here and in the engine, not in the jobs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pg2edge.pipeline.events import Transaction

log = logging.getLogger(__name__)

Role = Literal["replica", "publisher"]
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, role: Role = "replica") -> None:
        self.registry = registry or CollectorRegistry()
        self.role = role
        done = "published to Kafka" if role == "publisher" else "applied to the replica"
        verb = "published" if role == "publisher" else "applied"
        self.applied = Counter(f"pg2edge_{verb}_changes", f"Source row changes {done}",
                               ["table", "op"], registry=self.registry)
        self.transactions = Counter(f"pg2edge_{verb}_transactions", f"Source transactions {done}",
                                    registry=self.registry)
        self.lag_seconds = Gauge("pg2edge_lag_seconds",
                                 f"Now minus the commit time of the last {verb} transaction (0 once a heartbeat "
                                 "after it passed)", registry=self.registry)
        self.lag_bytes = Gauge("pg2edge_lag_bytes", f"Source WAL position minus the position {verb}",
                               registry=self.registry)
        self.retained_wal = Gauge("pg2edge_retained_wal_bytes", "WAL the replication slot keeps on the source",
                                  registry=self.registry)
        self.retry_depth: Gauge | None = None
        self.dlq_depth: Gauge | None = None
        if role == "publisher":
            self.batch_seconds = Histogram("pg2edge_batch_publish_seconds",
                                           "Time to read, send and flush (acks=all) one batch",
                                           buckets=BUCKETS, registry=self.registry)
        else:
            self.retry_depth = Gauge("pg2edge_retry_queue_depth", "Changes parked in the retry queue",
                                     registry=self.registry)
            self.dlq_depth = Gauge("pg2edge_dlq_depth", "Changes in the dead-letter queue", registry=self.registry)
            self.batch_seconds = Histogram("pg2edge_batch_apply_seconds", "Time to apply one batch",
                                           buckets=BUCKETS, registry=self.registry)

    def serve(self, port: int, *, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def record_queue(self, depths: dict[str, int]) -> None:
        """Retry depth (changes waiting to be retried or blocked behind one) and DLQ depth."""
        if self.retry_depth is not None and self.dlq_depth is not None:
            self.retry_depth.set(depths.get("retry", 0) + depths.get("waiting", 0))
            self.dlq_depth.set(depths.get("dead", 0))

    def record_batch(self, batch: Sequence[Transaction], seconds: float) -> None:
        """Changes by ``schema.table`` and op, transactions, and the batch's latency."""
        tally: Tally[tuple[str, str]] = Tally()
        for txn in batch:
            for ev in txn.events:
                tally[(f"{ev.source.schema}.{ev.source.table}", ev.op.value)] += 1
        for (table, op), n in tally.items():
            self.applied.labels(table=table, op=op).inc(n)
        self.transactions.inc(len(batch))
        self.batch_seconds.observe(seconds)

    def record_lag(self, *, reached_lsn: int, server_wal_end: int, commit_end_lsn: int | None,
                   commit_ts_ms: int | None, now: float | None = None) -> None:
        """Lag of a loop that reached ``reached_lsn`` (acked or visible) after a commit ending at ``commit_end_lsn``.

        Bytes: the server's WAL end (from the stream) minus the position
        reached. Seconds: now minus the last commit's time, or 0 once the
        position passed that commit (a heartbeat after it: nothing is pending).
        """
        if server_wal_end:
            self.lag_bytes.set(max(0, server_wal_end - reached_lsn))
        if commit_end_lsn is not None and reached_lsn > commit_end_lsn:
            self.lag_seconds.set(0.0)
        elif commit_ts_ms:
            now = time.time() if now is None else now
            self.lag_seconds.set(max(0.0, now - commit_ts_ms / 1000.0))
