"""`pg2edge publish`: stream the source (snapshot, then changes) into a Kafka topic."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import add_command, add_source_options


def register(sub: Any) -> None:
    parser = add_command(
        sub, "publish", help="publish the snapshot and every change of the source to a Kafka topic",
        description="The Kafka publisher. Writes snapshot rows (op r) then committed changes, in commit order, "
                    "to <prefix>.<database>.changes (one partition, or N by tenant with --tenant-column); acknowledges the slot only after the "
                    "broker acknowledged the records (acks=all). Replicas consume with `pg2edge sync --from-kafka`.",
        example="pg2edge publish --source postgresql://app@db/shop --bootstrap kafka:9092 --tables 'orders,product*'",
        handler=_run)
    add_source_options(parser)
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT", help="Kafka bootstrap server(s)")
    parser.add_argument("--topic-prefix", default="pg2edge", metavar="P", help="topic prefix (default pg2edge)")
    parser.add_argument("--tables", metavar="LIST", help="comma-separated names or globs (default: every "
                        "replicable table of schema public)")
    parser.add_argument("--state", default="pg2edge-publisher.db", metavar="FILE",
                        help="publisher state file: slot, publication, acknowledged LSN "
                             "(default ./pg2edge-publisher.db)")
    parser.add_argument("--allow-replica-identity-full", action="store_true",
                        help="set REPLICA IDENTITY FULL on selected tables without a primary key")
    parser.add_argument("--until-caught-up", action="store_true",
                        help="exit 0 once everything committed before the start is published")
    parser.add_argument("--resnapshot", action="store_true",
                        help="publish a fresh snapshot into the existing topic (new slot); every replica of the "
                             "topic empties its tables and reloads. For a topic whose retention dropped the snapshot")
    parser.add_argument("--heartbeat", default="1s", metavar="DURATION", help="heartbeat interval (default 1s)")
    parser.add_argument("--client", choices=("kafka-python", "confluent"), default="kafka-python",
                        help="Kafka client library (default kafka-python; confluent needs the confluent extra)")
    parser.add_argument("--linger-ms", type=int, default=5, metavar="MS", help="producer linger (default 5)")
    parser.add_argument("--envelope", choices=("batch", "row"), default="batch",
                        help="record format: batch (many whole transactions per record, compressed; pg2edge's "
                             "replicas) or row (one Debezium-style JSON record per change, for other consumers); "
                             "default batch")
    parser.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default=None,
                        help="producer compression (default zstd with the batch envelope, none with row; "
                             "snappy, lz4 and zstd need their Python packages)")
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve Prometheus metrics on this port (published changes, lag, retained WAL)")
    tenant = parser.add_argument_group("partitioned by tenant (replicas: sync --from-kafka --tenant-pattern)")
    tenant.add_argument("--tenant-column", metavar="COL",
                        help="partition the topic by this column's value: a tenant's records share one partition; "
                             "tables without the column go to every partition")
    tenant.add_argument("--partitions", type=int, metavar="N",
                        help="number of partitions with --tenant-column (default 8)")


def _compression(args: argparse.Namespace) -> str | None:
    from pg2edge.pipeline.kafka.client import default_compression

    chosen = args.compression or default_compression(args.envelope)
    return None if chosen == "none" else chosen


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config, parse_duration
    from pg2edge.pipeline.kafka.publisher import run_publisher
    from pg2edge.pipeline.lsn import format_lsn

    if args.partitions is not None and not args.tenant_column:
        from pg2edge.errors import ConfigError

        raise ConfigError("--partitions needs --tenant-column (without it the topic has one partition)")
    config = load_config(args.config, overrides={"source": {"dsn": args.source}})
    metrics = None
    if args.metrics_port:
        from pg2edge.pipeline.metrics import Metrics

        metrics = Metrics(role="publisher")
        metrics.serve(args.metrics_port)
    report = run_publisher(
        dsn=config.require_source(), bootstrap=args.bootstrap, topic_prefix=args.topic_prefix, tables=args.tables,
        state_path=args.state, allow_replica_identity_full=args.allow_replica_identity_full,
        until_caught_up=args.until_caught_up, client=args.client, resnapshot=args.resnapshot,
        heartbeat_interval=parse_duration(args.heartbeat),
        tenant_column=args.tenant_column, partitions=args.partitions or (8 if args.tenant_column else 1),
        producer_options={"linger_ms": args.linger_ms, "compression_type": _compression(args)},
        envelope=args.envelope, options=config.translate, metrics=metrics)
    print(f"publish stopped ({report.stopped_by}): {report.snapshot_rows} snapshot rows, {report.transactions} "
          f"transactions ({report.events} changes) to {report.topic}; acknowledged {format_lsn(report.acked_lsn)}")
    return 0
