"""Which published tables are tenant tables, which are shared, and the tenant files' DDL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pg2edge import dsn as dsnlib
from pg2edge.config import TenantsConfig, TranslateConfig
from pg2edge.pipeline.tenants.errors import TenantTableError
from pg2edge.pipeline.tenants.ids import check_pattern
from pg2edge.translators.ddl import plan_ddl
from pg2edge.translators.introspect import introspect
from pg2edge.translators.naming import sqlite_table_name
from pg2edge.translators.schema import Schema

Key = tuple[str, str]  # (source schema, source table)

_IDENTITY_SQL = """
SELECT c.relreplident::text,
       coalesce((SELECT array_agg(a.attname::text) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND ((c.relreplident = 'd' AND i.indisprimary)
                                               OR (c.relreplident = 'i' AND i.indisreplident))), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""


@dataclass
class TenantLayout:
    """The tenant split of one publication: tenant tables (have ``column``) and shared tables."""

    config: TenantsConfig
    tenant_tables: dict[Key, str] = field(default_factory=dict)  # -> SQLite table name
    shared_tables: dict[Key, str] = field(default_factory=dict)
    plan: Any = None  # translators.ddl.DdlPlan of a tenant file

    @property
    def column(self) -> str:
        return self.config.column

    @property
    def broadcast_shared(self) -> bool:
        return self.config.shared == "every"

    def tenant_file_tables(self) -> dict[Key, str]:
        """The tables a tenant file holds: its own, plus the shared ones in ``shared = "every"`` mode."""
        return {**self.tenant_tables, **(self.shared_tables if self.broadcast_shared else {})}


def check_routable(dsn: str, keys: list[Key], column: str) -> None:
    """Refuse tenant tables whose deletes would not carry the tenant column (names every such table)."""
    bad = []
    with dsnlib.control(dsn) as conn:
        for schema, table in keys:
            row = conn.execute(_IDENTITY_SQL, (schema, table)).fetchone()
            if row is None:
                continue
            ident, cols = row
            if ident != "f" and column not in cols:
                bad.append(f"{schema}.{table} (replica identity {ident!r} columns {list(cols)})")
    if bad:
        raise TenantTableError(
            f"tenant column {column!r} is neither in the key nor sent whole (REPLICA IDENTITY FULL) for: "
            + "; ".join(bad) + ". Add it to the primary key or run ALTER TABLE ... REPLICA IDENTITY FULL")


def plan_layout(dsn: str | None, published: Sequence[Key], *, config: TenantsConfig, options: TranslateConfig,
                schema: Schema | None = None) -> TenantLayout:
    """Classify the published tables (those with the tenant column are tenant tables), check routability and
    plan the tenant files' DDL.

    The tables are introspected from ``dsn``, or described by ``schema`` (a Kafka topic's schema record: a
    replica with no source access). Routability (deletes carry the tenant column) is checked on the source's
    catalog when there is a ``dsn``; without one, the publisher of a topic partitioned by tenant checked it
    (:func:`pipeline.kafka.partitioning.discover`)."""

    check_pattern(config.pattern)
    wanted = set(published)
    if schema is None:
        if dsn is None:
            raise ValueError("plan_layout needs a dsn or a schema")
        with dsnlib.control(dsn) as conn:
            schema = introspect(conn, schemas=sorted({s for s, _ in published}), tables=[t for _, t in published])
    else:
        schema = dataclasses.replace(schema, tables=tuple(t for t in schema.tables if (t.schema, t.name) in wanted))
    layout = TenantLayout(config=config)
    for table in schema.tables:
        key = (table.schema, table.name)
        target = sqlite_table_name(table.schema, table.name)
        if any(c.name == config.column for c in table.columns):
            layout.tenant_tables[key] = target
        else:
            layout.shared_tables[key] = target
    if dsn is not None:
        check_routable(dsn, sorted(layout.tenant_tables), config.column)
    keep = layout.tenant_file_tables()
    tenant_schema = dataclasses.replace(
        schema, tables=tuple(t for t in schema.tables if (t.schema, t.name) in keep), views=())
    layout.plan = plan_ddl(tenant_schema, options=options)
    return layout
