"""A continuous write load on the source, in a background thread, for CDC tests.

Inserts, updates (including key changes when asked) and deletes on a table
``(id bigint primary key, val text, n integer, payload text)``, several
rows per transaction, until stopped. The source stays the truth: tests
compare the replica against PostgreSQL afterwards, so the load needs no log.
"""

from __future__ import annotations

import random
import threading
import time

import psycopg
from psycopg import sql


class WriteLoad:
    def __init__(self, dsn: str, table: str = "load", *, rows_per_txn: int = 5, pause: float = 0.002,
                 seed: int = 7) -> None:
        self.dsn = dsn
        self.table = table
        self.rows_per_txn = rows_per_txn
        self.pause = pause
        self.rng = random.Random(seed)
        self.commits = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def create_table(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, val text NOT NULL, "
                "n integer NOT NULL DEFAULT 0, payload text)").format(sql.Identifier(self.table)))

    def _run(self) -> None:
        ident = sql.Identifier(self.table)
        next_id = 1
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                row = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) + 1 FROM {}").format(ident)).fetchone()
                next_id = int(row[0]) if row else 1
                while not self._stop.is_set():
                    with conn.transaction():
                        for _ in range(self.rows_per_txn):
                            choice = self.rng.random()
                            if choice < 0.55 or next_id < 20:
                                conn.execute(sql.SQL("INSERT INTO {} (id, val, payload) VALUES (%s, %s, %s)").format(ident),
                                             (next_id, f"v{next_id}", "x" * self.rng.randint(0, 200)))
                                next_id += 1
                            elif choice < 0.85:
                                conn.execute(sql.SQL("UPDATE {} SET n = n + 1, val = %s WHERE id = %s").format(ident),
                                             (f"u{self.rng.randint(0, 10**6)}", self.rng.randint(1, next_id)))
                            else:
                                conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(ident),
                                             (self.rng.randint(1, next_id),))
                    self.commits += 1
                    if self.pause:
                        time.sleep(self.pause)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> WriteLoad:
        self._thread = threading.Thread(target=self._run, name=f"writeload-{self.table}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop the load; returns the number of committed transactions; re-raises a load error."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self.error:
            raise self.error
        return self.commits
