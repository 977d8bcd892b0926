"""A change topic partitioned by tenant (``pg2edge publish --tenant-column C --partitions N``).

Partition of a tenant id: ``crc32(utf-8 of the id as PostgreSQL prints it) % N``
(so ``7`` and ``'7'`` agree). Each partition is a self-contained, ordered
stream for its tenants:

* an event of a tenant table goes to its tenant's partition (``after``'s
  tenant column; ``before``'s for a delete);
* a row whose tenant changes is a delete in the old tenant's partition and an
  insert in the new one when the partitions differ (one UPDATE when they agree);
* shared-table events, TRUNCATEs of tenant tables, controls and heartbeats go
  to every partition;
* each partition receives the subset of a source transaction that concerns it,
  with the transaction's xid / commit LSN / commit time, so a consumer of one
  partition applies whole (sub)transactions in source commit order.

A NULL tenant goes to partition 0 (the tenant replica refuses it by name).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pg2edge import dsn as dsnlib
from pg2edge.errors import ConfigError
from pg2edge.pipeline.events import UNCHANGED_TOAST, ChangeEvent, Op, Transaction
from pg2edge.pipeline.sinks.tenants import moves_tenant, split_move
from pg2edge.pipeline.tenants.layout import check_routable

Key = tuple[str, str]

MAX_PARTITIONS = 1024


def partition_of(tenant: Any, partitions: int) -> int:
    """The partition of a tenant id (a PostgreSQL text value, or None)."""
    if tenant is None or tenant is UNCHANGED_TOAST or partitions <= 1:
        return 0
    return zlib.crc32(str(tenant).encode("utf-8")) % partitions


@dataclass(frozen=True)
class TenantPartitioning:
    column: str
    partitions: int
    tenant_tables: frozenset[Key]

    def describe(self) -> dict[str, Any]:
        """What the publisher records (state, ``snapshot-begin``): replicas and restarts check it."""
        return {"column": self.column, "partitions": self.partitions}

    def _of_row(self, row: Mapping[str, Any] | None) -> int:
        return partition_of(None if row is None else row.get(self.column), self.partitions)

    def row_partitions(self, table: Key, row: Mapping[str, Any]) -> Sequence[int]:
        """Partitions of a snapshot row: its tenant's, or every one for a shared table."""
        if table in self.tenant_tables:
            return (self._of_row(row),)
        return range(self.partitions)

    def split(self, txn: Transaction) -> dict[int, Transaction]:
        """The part of ``txn`` each partition receives (only partitions with events), in source order."""
        parts: dict[int, list[ChangeEvent]] = {}
        everyone = range(self.partitions)
        for ev in txn.events:
            if ev.table not in self.tenant_tables or ev.op is Op.TRUNCATE:
                for p in everyone:
                    parts.setdefault(p, []).append(ev)
            elif ev.op is Op.DELETE:
                parts.setdefault(self._of_row(ev.before), []).append(ev)
            elif moves_tenant(ev, self.column):
                old, new = self._of_row(ev.before), self._of_row(ev.after)
                if old == new:
                    parts.setdefault(new, []).append(ev)
                else:
                    gone, arrived = split_move(ev)
                    parts.setdefault(old, []).append(gone)
                    parts.setdefault(new, []).append(arrived)
            else:
                parts.setdefault(self._of_row(ev.after), []).append(ev)
        return {p: replace(txn, events=tuple(evs)) for p, evs in sorted(parts.items())}


def discover(dsn: str, tables: Sequence[Key], *, column: str, partitions: int) -> TenantPartitioning:
    """The published tables that have ``column`` are tenant tables; refuse ones whose deletes lack it."""

    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"--partitions must be between 1 and {MAX_PARTITIONS} (got {partitions})")
    with dsnlib.control(dsn) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.attname = %s AND a.attnum > 0 "
            "AND NOT a.attisdropped", (column,)).fetchall()
    with_column = {(r[0], r[1]) for r in rows}
    tenant_tables = frozenset(t for t in tables if t in with_column)
    if not tenant_tables:
        raise ConfigError(f"no published table has the tenant column {column!r} "
                          f"(published: {', '.join('.'.join(t) for t in tables) or 'none'})")
    check_routable(dsn, sorted(tenant_tables), column)
    return TenantPartitioning(column=column, partitions=partitions, tenant_tables=tenant_tables)
