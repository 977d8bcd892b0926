"""`pg2edge translate schema|query`: PostgreSQL schema and queries -> SQLite."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pg2edge.commands import add_command, add_source_options


def register(sub: Any) -> None:
    parser = add_command(
        sub, "translate", help="translate the PostgreSQL schema or a query to SQLite",
        example="pg2edge translate schema --source postgresql://postgres@127.0.0.1/shop --format sql",
        handler=_no_action)
    actions = parser.add_subparsers(dest="translate_action", metavar="{schema,query}")
    schema = add_command(
        actions, "schema", help="plan SQLite DDL (tables in FK order, indexes) from the live catalog",
        example="pg2edge translate schema --source postgresql://postgres@127.0.0.1/shop --target replica.db",
        handler=_schema)
    add_source_options(schema)
    schema.add_argument("--tables", metavar="LIST", help="comma-separated tables (name or schema.name); default all")
    schema.add_argument("--schemas", metavar="LIST", default="public", help="comma-separated schemas (default public)")
    schema.add_argument("--format", choices=("sql", "drizzle", "json"), default="sql",
                        help="sql: the DDL plan; drizzle: a drizzle-orm schema.ts; json: model + findings")
    schema.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    schema.add_argument("--target", metavar="FILE.db", help="execute the plan into this SQLite file")
    schema.add_argument("--dry-run", action="store_true", help="with --target: print the plan, run nothing")
    schema.add_argument("--strict", action="store_true", help="exit 1 when any finding is warn or worse")
    query = add_command(
        actions, "query", help="translate a PostgreSQL query to SQLite (findings for what cannot translate)",
        example="pg2edge translate query \"SELECT * FROM orders WHERE created_at > now() - interval '1 day'\"",
        handler=_query)
    query.add_argument("sql", nargs="?", help="the PostgreSQL query (or use --file)")
    query.add_argument("--file", metavar="FILE", help="read the query from FILE ('-' for standard input)")
    query.add_argument("--strict", action="store_true", help="exit 1 when any finding is warn or worse")
    query.add_argument("--allow-errors", action="store_true",
                       help="print the SQL even when an error finding remains (marked as such; exit 0); by default "
                            "such SQL is not printed and the exit status is 1")
    query.add_argument("--target", metavar="FILE.db|URL",
                       help="read the source column types the replica recorded (no PostgreSQL access needed): a "
                            "file, or a libsql:// / http(s):// URL (token in $PG2EDGE_TARGET_AUTH_TOKEN or $TURSO_AUTH_TOKEN)")
    query.add_argument("--source", metavar="DSN",
                       help="read column types from this database, so numeric columns stored as TEXT are "
                            "compared and sorted as numbers, dates subtract, enums order by position "
                            "(default: $PG2EDGE_SOURCE or pg2edge.toml, if set; --target wins)")
    query.add_argument("--config", metavar="FILE", help="configuration file (default: ./pg2edge.toml if present)")


def _no_action(args: argparse.Namespace) -> int:
    print("pg2edge translate: choose schema or query (see pg2edge translate --help)", file=sys.stderr)
    return 2


def _write(text: str, path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def _schema(args: argparse.Namespace) -> int:
    from pg2edge.config import load_config
    from pg2edge.translators.render import translate_schema

    config = load_config(args.config, overrides={"source": {"dsn": args.source}})
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else (config.tables or None)
    result = translate_schema(
        config.require_source(), schemas=[s.strip() for s in args.schemas.split(",")], tables=tables,
        options=config.translate, output_format=args.format, target=None if args.dry_run else args.target,
        strict=args.strict)
    _write(result.text, args.output)
    for finding in result.findings:
        print(f"-- {finding}", file=sys.stderr)
    if args.target and not args.dry_run:
        print(f"-- executed {result.statements} statement(s) into {args.target}", file=sys.stderr)
    return 0


def _query(args: argparse.Namespace) -> int:
    from pg2edge.errors import ConfigError

    if args.file:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    elif args.sql:
        text = args.sql
    else:
        raise ConfigError("translate query: give the SQL as an argument or with --file FILE")
    from pg2edge.config import load_config
    from pg2edge.translators.query import translate_sql

    recorded = None
    config = load_config(args.config, overrides={"source": {"dsn": args.source}})
    if args.target:
        from pg2edge.pipeline.remote import is_remote
        from pg2edge.translators.recorded import read_replica_types, read_source_types

        if is_remote(args.target):  # libSQL or D1: the remote plumbing's connection and token rules
            from pg2edge.pipeline.remote import resolve
            from pg2edge.pipeline.status import open_readonly

            conn = open_readonly(resolve(args.target, config_token=config.target.token()))
            try:
                recorded = read_source_types(conn)
            finally:
                conn.close()
        else:
            recorded = read_replica_types(args.target)
    elif config.source.dsn:
        from pg2edge.dsn import connect
        from pg2edge.translators.ddl import plan_ddl
        from pg2edge.translators.introspect import introspect

        with connect(config.source.dsn, autocommit=True) as conn:
            schema = introspect(conn)
        recorded = plan_ddl(schema, options=config.translate).source_types  # what a replica would record
    result = translate_sql(text, strict=args.strict, column_types=recorded.tables if recorded else None,
                           enums=recorded.enums if recorded else None, fts=recorded.fts if recorded else None,
                           timestamps=recorded.timestamps if recorded else "iso")
    for finding in result.findings:
        print(f"-- {finding}", file=sys.stderr)
    if result.errors and not args.allow_errors:
        print(f"pg2edge translate query: not printed: {len(result.errors)} error finding(s) above; the SQL would "
              "not give PostgreSQL's answer on SQLite (--allow-errors prints it anyway)", file=sys.stderr)
        return 1
    if result.errors:
        print(f"-- pg2edge: {len(result.errors)} error finding(s): this SQL does NOT give PostgreSQL's answer")
    print(result.sql + ";")
    return 0
