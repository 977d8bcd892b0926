"""`pg2edge sync`: the continuous sync daemon (snapshot if needed, then stream)."""

from __future__ import annotations

import argparse
from typing import Any

from pg2edge.commands import (
    add_command,
    add_snapshot_path_option,
    add_source_options,
    add_table_options,
    add_target_option,
    add_tenant_options,
)


def register(sub: Any) -> None:
    parser = add_command(
        sub, "sync", help="snapshot if needed, then stream every change into the SQLite replica",
        description="The sync daemon. Applies whole source transactions in commit order, exactly once; "
                    "SIGTERM/SIGINT finish the current batch, acknowledge it and exit 0.",
        example="pg2edge sync --source postgresql://app@db/shop --target shop.db --until-caught-up\n"
                "  PG2EDGE_TARGET_AUTH_TOKEN=... pg2edge sync --source postgresql://app@db/shop "
                "--target libsql://shop-org.turso.io\n"
                "  pg2edge sync --from-kafka --bootstrap kafka:9092 --topic pg2edge.shop.changes "
                "--target edge.db   # an edge replica: no --source\n"
                "  pg2edge sync --from-kafka --bootstrap kafka:9092 --topic pg2edge.shop.changes "
                "--tenant-pattern 'tenants/{tenant}.db'",
        handler=_run)
    add_source_options(parser)
    add_target_option(parser)
    add_table_options(parser)
    add_snapshot_path_option(parser)
    parser.add_argument("--until-caught-up", action="store_true",
                        help="exit 0 once the replica has applied the source's WAL position taken at start")
    parser.add_argument("--heartbeat", default="1s", metavar="DURATION",
                        help="interval of heartbeat messages that keep an idle slot moving (default 1s)")
    parser.add_argument("--warn-retained-wal", type=int, default=1024**3, metavar="BYTES",
                        help="log a warning when the slot retains more WAL than this on the source (default 1 GiB)")
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on this port")
    kafka = parser.add_argument_group("Kafka replica, plain or per tenant (needs only the broker: the schema "
                                      "travels in the topic; without --source, give --topic)")
    kafka.add_argument("--from-kafka", action="store_true", help="apply the topic written by `pg2edge publish`")
    add_tenant_options(parser)
    kafka.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap server(s)")
    kafka.add_argument("--group", metavar="NAME", help="consumer group (advisory offsets; the replica stores its own)")
    kafka.add_argument("--client", choices=("kafka-python", "confluent"), default="kafka-python",
                        help="Kafka client library (default kafka-python; confluent needs the confluent extra)")
    kafka.add_argument("--topic", metavar="T", help="topic (default pg2edge.<database>.changes)")
    kafka.add_argument("--consume-partitions", metavar="LIST",
                       help="with --tenant-pattern: consume only these partitions of a topic partitioned by "
                            "tenant, e.g. 0-3,6 (default all)")
    kafka.add_argument("--seed-from", metavar="REPLICA.db",
                       help="create the new --target as a copy of this (live) Kafka replica, rows, position and "
                            "retry queue, then continue from its offset (for a topic whose retention dropped the "
                            "snapshot)")
    parser.add_argument("--max-attempts", type=int, default=5, metavar="N",
                        help="attempts before a failing change goes to the DLQ (default 5)")
    parser.add_argument("--retry-delay", default="1s", metavar="DURATION",
                        help="first retry back-off, doubled each attempt (default 1s)")


def _run(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config, parse_duration
    from pg2edge.pipeline.daemon import run_sync
    from pg2edge.pipeline.lsn import format_lsn
    from pg2edge.pipeline.sinks.retry import RetryPolicy

    config = load_config(args.config, overrides={"source": {"dsn": args.source},
                                                 "target": {"path": args.target, "snapshot_path": args.snapshot_path},
                                                 "tenants": {"pattern": args.tenant_pattern,
                                                             "column": args.tenant_column}})
    metrics = None
    if args.metrics_port:
        from pg2edge.pipeline.metrics import Metrics

        metrics = Metrics()
        metrics.serve(args.metrics_port)
    if args.tenant_pattern:
        if args.seed_from:
            from pg2edge.errors import ConfigError

            raise ConfigError("--seed-from copies one Kafka replica file; it does not apply to --tenant-pattern")
        if args.from_kafka:
            return _run_tenant_kafka(args, config, metrics)
        return _run_tenants(args, config, metrics)
    from pg2edge.pipeline.remote import is_remote, resolve

    if is_remote(config.target.path or "") and (args.from_kafka or args.seed_from):
        from pg2edge.errors import ConfigError

        raise ConfigError(f"--from-kafka/--seed-from write a SQLite file; a remote target "
                          f"({resolve(config.require_target())}) is synced from PostgreSQL (drop --from-kafka)")
    if args.from_kafka:
        return _run_kafka(args, config, metrics)
    if args.seed_from:
        from pg2edge.errors import ConfigError

        raise ConfigError("--seed-from copies a Kafka replica: use it with --from-kafka")
    import sys

    from pg2edge.progress import table_progress

    target = resolve(config.require_target(), config_token=config.target.token())
    with table_progress(enabled=is_remote(target) and sys.stderr.isatty()) as advance:  # bars: the remote snapshot
        report = run_sync(metrics=metrics, dsn=config.require_source(), target=target,  # type: ignore[arg-type]
                          tables=args.tables, jobs=args.jobs, options=config.translate,
                          until_caught_up=args.until_caught_up, heartbeat_interval=parse_duration(args.heartbeat),
                          retained_wal_warn_bytes=args.warn_retained_wal,
                          allow_replica_identity_full=args.allow_replica_identity_full,
                          policy=RetryPolicy(max_attempts=args.max_attempts,
                                             base_delay=parse_duration(args.retry_delay)),
                          snapshot_path=config.target.snapshot_path, on_progress=advance)
    at = format_lsn(report.position.visible_lsn) if report.position else "-"
    print(f"sync stopped ({report.stopped_by}): {report.transactions} transactions, {report.rows} row changes "
          f"applied; replica at {at}")
    return 0


def _run_kafka(args: argparse.Namespace, config: Any, metrics: Any) -> int:
    from pg2edge.config import parse_duration
    from pg2edge.errors import ConfigError
    from pg2edge.pipeline.kafka.replica import run_kafka_replica
    from pg2edge.pipeline.lsn import format_lsn
    from pg2edge.pipeline.sinks.retry import RetryPolicy

    if not args.bootstrap:
        raise ConfigError("--from-kafka needs --bootstrap HOST:PORT")
    report = run_kafka_replica(
        bootstrap=args.bootstrap, target=config.require_target(), dsn=config.source.dsn, topic=args.topic,
        group=args.group, client=args.client, options=config.translate, seed_from=args.seed_from,
        until_caught_up=args.until_caught_up,
        policy=RetryPolicy(max_attempts=args.max_attempts, base_delay=parse_duration(args.retry_delay)),
        metrics=metrics)
    at = format_lsn(report.position.visible_lsn) if report.position else "-"
    print(f"sync --from-kafka stopped ({report.stopped_by}): {report.snapshot_rows} snapshot rows, "
          f"{report.transactions} transactions ({report.rows} changes) applied, {report.skipped} duplicates "
          f"skipped, {report.parked} parked; replica at {at}")
    return 0


def _run_tenants(args: argparse.Namespace, config: Any, metrics: Any) -> int:
    from pg2edge.config import parse_duration
    from pg2edge.pipeline.lsn import format_lsn
    from pg2edge.pipeline.tenants.daemon import run_tenant_sync

    report = run_tenant_sync(dsn=config.require_source(), tenants=config.tenants, tables=args.tables, jobs=args.jobs,
                             options=config.translate, until_caught_up=args.until_caught_up,
                             heartbeat_interval=parse_duration(args.heartbeat),
                             allow_replica_identity_full=args.allow_replica_identity_full, metrics=metrics)
    at = format_lsn(report.position.visible_lsn) if report.position else "-"
    print(f"tenant sync stopped ({report.stopped_by}): {report.transactions} transactions, {report.rows} row "
          f"changes routed, {report.tenants_created} new tenant database(s); shared file at {at}")
    for tenant, n in sorted(report.ignored.items()):
        print(f"tenant {tenant!r} was deleted: {n} later change(s) for it not applied")
    return 0


def parse_partitions(text: str) -> list[int]:
    """``0-3,6`` -> [0, 1, 2, 3, 6]; a bad list is a ConfigError naming it."""
    from pg2edge.errors import ConfigError

    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"--consume-partitions {text!r}: expected numbers and ranges such as 0-3,6") from None
    if not out:
        raise ConfigError(f"--consume-partitions {text!r} names no partition")
    return out


def _run_tenant_kafka(args: argparse.Namespace, config: Any, metrics: Any) -> int:
    from pg2edge.errors import ConfigError
    from pg2edge.pipeline.tenants.kafka_replica import run_tenant_kafka_replica

    if not args.bootstrap:
        raise ConfigError("--from-kafka needs --bootstrap HOST:PORT")
    report = run_tenant_kafka_replica(
        bootstrap=args.bootstrap, dsn=config.source.dsn, tenants=config.tenants, topic=args.topic,
        partitions=parse_partitions(args.consume_partitions) if args.consume_partitions else None,
        group=args.group, client=args.client, options=config.translate, until_caught_up=args.until_caught_up,
        metrics=metrics)
    print(f"tenant sync --from-kafka stopped ({report.stopped_by}): partitions "
          f"{','.join(map(str, report.partitions))}: {report.snapshot_rows} snapshot rows, {report.transactions} "
          f"transactions ({report.rows} row changes) routed, {report.tenants_created} new tenant file(s), "
          f"{report.parked} parked")
    return 0
