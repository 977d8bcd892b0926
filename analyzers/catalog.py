"""Read the statistics and catalog facts the analyzer needs, in a fixed number of queries.

Partitions are folded into their root table: their counters and sizes are
summed, and the root is reported once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

COUNTERS = ("seq_scan", "idx_scan", "seq_tup_read", "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_del")

_STATS_SQL = """
SELECT coalesce(pg_partition_root(s.relid)::oid, s.relid) AS root, s.seq_scan, coalesce(s.idx_scan, 0),
       s.seq_tup_read, coalesce(s.idx_tup_fetch, 0), s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_live_tup
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = ANY(%(schemas)s)
"""

_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident,
       pg_total_relation_size(c.oid),
       EXISTS (SELECT 1 FROM pg_constraint p WHERE p.conrelid = c.oid AND p.contype = 'p'),
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
       (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i WHERE i.inhparent = c.oid),
       coalesce((SELECT sum(pg_relation_size(c2.reltoastrelid)) FROM pg_class c2
                 WHERE (c2.oid = c.oid OR c2.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = c.oid))
                   AND c2.reltoastrelid <> 0), 0),
       greatest(c.reltuples, 0)::bigint
         + coalesce((SELECT sum(greatest(p.reltuples, 0))::bigint FROM pg_class p
                     WHERE p.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = c.oid)), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%(schemas)s)
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype, t.typcategory,
       bt.typname, bt.typtype, bt.typcategory, a.attidentity,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_type bt ON bt.oid = coalesce(nullif(t.typbasetype, 0), et.oid)
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname = ANY(%(schemas)s)
ORDER BY a.attrelid, a.attnum
"""

_FKS_SQL = """
SELECT con.conrelid, con.confrelid, con.conname
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND n.nspname = ANY(%(schemas)s) AND NOT c.relispartition
"""

_WIDTH_SQL = """
SELECT c.oid, sum(s.avg_width)
FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = n.oid
WHERE s.schemaname = ANY(%(schemas)s)
GROUP BY c.oid
"""


@dataclass(frozen=True, slots=True)
class ColumnFact:
    name: str
    type: str
    typname: str
    typtype: str
    typcategory: str
    base_typname: str | None
    base_typtype: str | None
    base_typcategory: str | None
    identity: str
    default: str | None


@dataclass(slots=True)
class TableFacts:
    oid: int
    schema: str
    name: str
    relkind: str
    replident: str
    bytes: int
    has_pk: bool
    triggers: int
    toast_bytes: int
    avg_row_width: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    live_rows: int = 0
    columns: list[ColumnFact] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def partitioned(self) -> bool:
        return self.relkind == "p"


@dataclass(slots=True)
class Snapshot:
    """One sample of the statistics plus the catalog facts, keyed by table oid."""

    tables: dict[int, TableFacts]
    fks: list[tuple[int, int, str]]
    database: str
    stats_reset: str | None
    stats_age_seconds: float


def read_counters(conn: psycopg.Connection[Any], schemas: list[str]) -> tuple[dict[int, dict[str, int]], dict[int, int]]:
    """Per root table: summed counters and live rows (one query)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    counters: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    live: dict[int, int] = defaultdict(int)
    for row in conn.execute(_STATS_SQL, {"schemas": schemas}):
        root = row[0]
        for name, value in zip(COUNTERS, row[1:8]):
            counters[root][name] += int(value or 0)
        live[root] += int(row[8] or 0)
    return dict(counters), dict(live)


def read_snapshot(conn: psycopg.Connection[Any], schemas: list[str]) -> Snapshot:
    """Statistics and catalog facts for every table of ``schemas``."""
    info = conn.execute(
        "SELECT current_database(), d.stats_reset::text, "
        "extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time())) "
        "FROM pg_stat_database d WHERE d.datname = current_database()").fetchone()
    assert info is not None
    tables: dict[int, TableFacts] = {}
    for row in conn.execute(_TABLES_SQL, {"schemas": schemas}):
        oid, schema, name, relkind, replident, size, has_pk, triggers, part_bytes, toast, estimate = row
        tables[oid] = TableFacts(oid=oid, schema=schema, name=name, relkind=relkind, replident=replident,
                                 bytes=int(size) + int(part_bytes), has_pk=has_pk, triggers=int(triggers),
                                 toast_bytes=int(toast), live_rows=int(estimate))
    for row in conn.execute(_COLUMNS_SQL, {"schemas": schemas}):
        facts = tables.get(row[0])
        if facts is not None:
            facts.columns.append(ColumnFact(*row[1:]))
    for oid, width in conn.execute(_WIDTH_SQL, {"schemas": schemas}):
        if oid in tables and width is not None:
            tables[oid].avg_row_width = int(width)
    counters, live = read_counters(conn, schemas)
    for oid, values in counters.items():
        if oid in tables:
            tables[oid].counters = values
            # n_live_tup restarts at 0 with a stats reset; then the planner's estimate is better.
            tables[oid].live_rows = live.get(oid, 0) or tables[oid].live_rows
    fks = [(r[0], r[1], r[2]) for r in conn.execute(_FKS_SQL, {"schemas": schemas})]
    return Snapshot(tables=tables, fks=fks, database=info[0], stats_reset=info[1],
                    stats_age_seconds=float(info[2] or 0.0))


def max_row_bytes(conn: psycopg.Connection[Any], facts: TableFacts, *, sample_percent: float = 5.0,
                  full_scan_rows: int = 100_000) -> int:
    """Largest row of the table (for per-row limits such as D1's 1 MB).

    Tables up to ``full_scan_rows`` rows are read whole; bigger ones through a
    TABLESAMPLE of ``sample_percent`` of their pages, so the figure is a lower bound.
    """

    source = sql.SQL("{}.{} AS t").format(sql.Identifier(facts.schema), sql.Identifier(facts.name))
    params: tuple[float, ...] = ()
    if facts.live_rows > full_scan_rows:
        source = sql.SQL("{} TABLESAMPLE SYSTEM (%s)").format(source)
        params = (sample_percent,)
    row = conn.execute(sql.SQL("SELECT coalesce(max(pg_column_size(t.*)), 0) FROM {}").format(source),
                       params).fetchone()
    return int(row[0]) if row else 0
