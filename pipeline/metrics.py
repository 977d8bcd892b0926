"""Prometheus metrics of the sync daemon (served on ``--metrics-port``).

Each daemon gets its own registry, so tests and several daemons in one
process never collide.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.events import Transaction


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.applied = Counter("pg2edge_applied_changes", "Row changes applied to the replica",
                               ["table", "op"], registry=self.registry)
        self.transactions = Counter("pg2edge_applied_transactions", "Source transactions applied",
                                    registry=self.registry)
        self.lag_seconds = Gauge("pg2edge_lag_seconds", "Now minus the commit time of the last applied transaction",
                                 registry=self.registry)
        self.lag_bytes = Gauge("pg2edge_lag_bytes", "Source WAL position minus the replica's position",
                               registry=self.registry)
        self.retained_wal = Gauge("pg2edge_retained_wal_bytes", "WAL the replication slot keeps on the source",
                                  registry=self.registry)
        self.retry_depth = Gauge("pg2edge_retry_queue_depth", "Changes parked in the retry queue",
                                 registry=self.registry)
        self.dlq_depth = Gauge("pg2edge_dlq_depth", "Changes in the dead-letter queue", registry=self.registry)
        self.batch_seconds = Histogram("pg2edge_batch_apply_seconds", "Time to apply one batch",
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=self.registry)

    def serve(self, port: int, *, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def record_queue(self, depths: dict[str, int]) -> None:
        """Retry depth (changes waiting to be retried or blocked behind one) and DLQ depth."""
        self.retry_depth.set(depths.get("retry", 0) + depths.get("waiting", 0))
        self.dlq_depth.set(depths.get("dead", 0))

    def record_batch(self, batch: Sequence[Transaction], seconds: float) -> None:
        tally: Tally[tuple[str, str]] = Tally()
        for txn in batch:
            for ev in txn.events:
                tally[(f"{ev.source.schema}.{ev.source.table}", ev.op.value)] += 1
        for (table, op), n in tally.items():
            self.applied.labels(table=table, op=op).inc(n)
        self.transactions.inc(len(batch))
        self.batch_seconds.observe(seconds)
