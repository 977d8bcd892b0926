"""A workload driver for the sample shop: reads and writes per table at set ratios.

Reads are counted by PostgreSQL as scans (seq_scan + idx_scan) and writes as
tuples (n_tup_ins + n_tup_upd + n_tup_del), the measures the analyzer uses.
Reads run as index lookups inside one statement per table (a correlated
subquery executed once per generated row), so hundreds of thousands of reads
take about a second. Writes are batched statements, so they add almost no
extra scans; foreign-key checks add a few reads to the referenced tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from pg2edge import dsn as dsnlib


@dataclass(frozen=True)
class TableLoad:
    """Writes per run (at scale 1) and the target reads:writes ratio."""

    writes: int
    ratio: float

    def reads(self, scale: float) -> int:
        return max(1, round(self.writes * scale * self.ratio))


# The reference article's ratios.
PROFILE: dict[str, TableLoad] = {
    "products": TableLoad(writes=10, ratio=10_000),
    "categories": TableLoad(writes=1, ratio=100_000),
    "blog_posts": TableLoad(writes=5, ratio=20_000),
    "user_preferences": TableLoad(writes=2_000, ratio=10),
    "sessions": TableLoad(writes=2_000, ratio=2),
    "orders": TableLoad(writes=2_000, ratio=1),
    "inventory": TableLoad(writes=4_000, ratio=0.25),
    "audit_logs": TableLoad(writes=10_000, ratio=0.01),
}

# One key lookup per generated row g; %(k)s is the key space to cycle over.
READ_SQL = {
    "products": "SELECT count((SELECT p.price FROM products p WHERE p.sku = 'sku-' || (1 + g %% %(k)s))) "
                "FROM generate_series(1, %(n)s) g",
    "categories": "SELECT count((SELECT c.name FROM categories c WHERE c.id = 1 + g %% %(k)s)) "
                  "FROM generate_series(1, %(n)s) g",
    "blog_posts": "SELECT count((SELECT b.title FROM blog_posts b WHERE b.slug = 'post-' || (1 + g %% %(k)s))) "
                  "FROM generate_series(1, %(n)s) g",
    "user_preferences": "SELECT count((SELECT u.theme FROM user_preferences u "
                        "WHERE u.user_id = md5('user' || (1 + g %% %(k)s))::uuid)) FROM generate_series(1, %(n)s) g",
    "sessions": "SELECT count((SELECT s.expires_at FROM sessions s "
                "WHERE s.user_id = md5('user' || (1 + g %% %(k)s))::uuid LIMIT 1)) FROM generate_series(1, %(n)s) g",
    "orders": "SELECT count((SELECT o.total FROM orders o WHERE o.id = 1 + g %% %(k)s)) "
              "FROM generate_series(1, %(n)s) g",
    "inventory": "SELECT count((SELECT i.quantity FROM inventory i WHERE i.product_id = %(pid)s AND g > 0)) "
                 "FROM generate_series(1, %(n)s) g",
    "audit_logs": "SELECT count((SELECT a.action FROM audit_logs a WHERE a.id = 1 + g %% %(k)s)) "
                  "FROM generate_series(1, %(n)s) g",
}

# Batched writes; %(n)s rows each. Mixes inserts, updates and deletes.
WRITE_SQL: dict[str, list[str]] = {
    "products": ["UPDATE products SET price = price + 0.01, updated_at = now() "
                 "WHERE sku = ANY (SELECT 'sku-' || g FROM generate_series(1, %(n)s) g)"],
    "categories": ["UPDATE categories SET name = name || '' WHERE id = ANY (SELECT generate_series(1, %(n)s)::bigint)"],
    "blog_posts": ["UPDATE blog_posts SET title = title || '' WHERE id = ANY (SELECT generate_series(1, %(n)s)::bigint)"],
    "user_preferences": ["UPDATE user_preferences SET theme = CASE theme WHEN 'light' THEN 'dark' ELSE 'light' END, "
                         "updated_at = now() WHERE user_id = ANY (SELECT md5('user' || g)::uuid "
                         "FROM generate_series(1, %(n)s) g)"],
    "sessions": ["INSERT INTO sessions (user_id, data, expires_at) SELECT md5('user' || g)::uuid, '{}', "
                 "now() + interval '1 day' FROM generate_series(1, %(n)s) g"],
    "orders": ["INSERT INTO orders (user_id, product_id, quantity, total) "
               "SELECT md5('user' || g)::uuid, (SELECT id FROM products WHERE sku = 'sku-1'), 1, 9.99 "
               "FROM generate_series(1, %(n)s) g"],
    "inventory": ["UPDATE inventory SET reserved = reserved + 1, updated_at = now() WHERE product_id = ANY "
                  "(SELECT id FROM products WHERE sku = ANY (SELECT 'sku-' || g FROM generate_series(1, %(n)s) g))"],
    "audit_logs": ["INSERT INTO audit_logs (actor, action, entity, entity_id) "
                   "SELECT 'workload', 'read', 'product', g::text FROM generate_series(1, %(n)s) g"],
}


def _key_space(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return max(1, int(row[0]) if row else 1)


def run(dsn: str, *, scale: float = 1.0, tables: list[str] | None = None,
        wait_for_stats: bool = True) -> dict[str, dict[str, int]]:
    """Run one round of the workload; returns the planned reads and writes per table.

    The connection is closed at the end, which flushes its statistics; with
    ``wait_for_stats`` this returns once they are visible to other sessions.
    """
    chosen = tables or list(PROFILE)
    planned: dict[str, dict[str, int]] = {}
    with dsnlib.connect(dsn, autocommit=True) as conn:
        keys = {t: _key_space(conn, t) for t in chosen}
        first = conn.execute("SELECT product_id FROM inventory LIMIT 1").fetchone()
        for table in chosen:
            load = PROFILE[table]
            writes = max(1, round(load.writes * scale))
            # An UPDATE touches each key once per statement: batch by the key space.
            batch = writes if WRITE_SQL[table][0].startswith("INSERT") else min(writes, keys[table])
            done = 0
            while done < writes:
                n = min(batch, writes - done)
                for stmt in WRITE_SQL[table]:
                    conn.execute(stmt, {"n": n})
                done += n
            reads = load.reads(scale)
            conn.execute(READ_SQL[table], {"n": reads, "k": keys[table], "pid": first[0] if first else None})
            planned[table] = {"reads": reads, "writes": writes}
    if wait_for_stats:
        last = chosen[-1]
        _wait_visible(dsn, last, planned[last]["reads"])
    return planned


def _wait_visible(dsn: str, table: str, reads: int, timeout: float = 10.0) -> None:
    """Wait until another session sees ``reads`` scans on ``table`` (the backend flushes at exit)."""
    deadline = time.monotonic() + timeout
    with dsnlib.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                               "WHERE relname = %s", (table,)).fetchone()
            if row and row[0] >= reads:
                return
            time.sleep(0.05)
