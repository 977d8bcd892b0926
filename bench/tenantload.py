"""The tenant benchmarks' backlog: ``changes`` row changes on ``notes`` spread over ``tenants`` tenants.

60% inserts, 30% updates, 10% deletes, in statements of at most 1,000 rows
(``bench/kafka_tenants.py``, ``bench/tenants_libsql.py``).
"""

from __future__ import annotations

import psycopg


def backlog(dsn: str, changes: int, tenants: int) -> None:
    inserts, updates = changes * 6 // 10, changes * 3 // 10
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, inserts, 1000):
            conn.execute("INSERT INTO notes SELECT 't' || (g %% %s), g, 'note ' || g "
                         "FROM generate_series(%s::int, %s::int) g", (tenants, start + 1, min(start + 1000, inserts)))
        for start in range(0, updates, 1000):
            conn.execute("UPDATE notes SET body = body || '!' WHERE id BETWEEN %s AND %s",
                         (start + 1, min(start + 1000, updates)))
        deletes = changes - inserts - updates
        for start in range(0, deletes, 1000):
            conn.execute("DELETE FROM notes WHERE id BETWEEN %s AND %s", (start + 1, min(start + 1000, deletes)))
