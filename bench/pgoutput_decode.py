"""Decoded pgoutput changes per second from a real backlog (~200k changes).

Run: PYTHONPATH=. python bench/pgoutput_decode.py [--rows 200000] [--dsn DSN]
Without --dsn a throwaway PostgreSQL cluster is started. The backlog is
inserts, updates and deletes across 2000-row transactions; frames are first
received into memory, then decoded (and assembled into events) from memory so
the figure is the decoder's own speed, not the network's.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from pg2edge.pgcluster import LocalCluster
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sources import pgoutput
from pg2edge.pipeline.sources.assembler import Assembler
from pg2edge.pipeline.sources.replication import ReplicationStream, create_slot, drop_slot


@contextlib.contextmanager
def source(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with LocalCluster() as cluster:
        yield cluster.dsn()


def make_backlog(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_orders")
        conn.execute("CREATE TABLE bench_orders (id bigint PRIMARY KEY, customer text, total numeric(12,2), "
                     "status text, placed_at timestamptz, note text)")
        conn.execute("DROP PUBLICATION IF EXISTS bench_pub")
        conn.execute("CREATE PUBLICATION bench_pub FOR TABLE bench_orders")
    drop_slot(dsn, "bench_slot")
    create_slot(dsn, "bench_slot")
    inserts, updates, deletes = int(rows * 0.6), int(rows * 0.3), rows - int(rows * 0.6) - int(rows * 0.3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for lo in range(1, inserts + 1, 2000):
            hi = min(lo + 1999, inserts)
            conn.execute("INSERT INTO bench_orders SELECT g, 'customer ' || g, g * 1.25, 'new', "
                         "now(), md5(g::text) FROM generate_series(%s::bigint, %s::bigint) g", (lo, hi))
        for lo in range(1, updates + 1, 2000):
            conn.execute("UPDATE bench_orders SET status = 'paid', total = total + 1 "
                         "WHERE id BETWEEN %s::bigint AND %s::bigint", (lo, min(lo + 1999, updates)))
        conn.execute("DELETE FROM bench_orders WHERE id > %s::bigint", (inserts - deletes,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dsn")
    args = ap.parse_args()
    with source(args.dsn) as dsn:
        make_backlog(dsn, args.rows)
        payloads: list[bytes] = []
        t0 = time.perf_counter()
        with ReplicationStream(dsn, slot="bench_slot", publications=["bench_pub"]) as stream:
            while (frame := stream.read(timeout=2.0)) is not None:
                payloads.append(frame.payload)
        t_recv = time.perf_counter() - t0
        drop_slot(dsn, "bench_slot")

    t0 = time.perf_counter()
    decoded = [pgoutput.decode(p) for p in payloads]
    t_dec = time.perf_counter() - t0
    changes = sum(isinstance(m, (pgoutput.Insert, pgoutput.Update, pgoutput.Delete)) for m in decoded)

    t0 = time.perf_counter()
    asm = Assembler()
    events = 0
    txns: list[Transaction] = []
    for m in decoded:
        item = asm.feed(m)
        if isinstance(item, Transaction):
            events += len(item.events)
            txns.append(item)
    t_asm = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        db = open_replica(Path(tmp) / "bench.db")
        db.execute("CREATE TABLE bench_orders (id INTEGER PRIMARY KEY, customer TEXT, total TEXT, status TEXT, "
                   "placed_at TEXT, note TEXT)")
        applier = Applier(db, {("public", "bench_orders"): TableMapping(target="bench_orders")})
        t0 = time.perf_counter()
        for i in range(0, len(txns), 10):
            applier.apply(txns[i:i + 10])
        t_apply = time.perf_counter() - t0
        db.close()

    print(f"backlog: {len(payloads)} pgoutput messages, {changes} row changes, {events} events")
    print(f"receive (stream from PostgreSQL): {t_recv:.2f}s = {len(payloads) / t_recv:,.0f} messages/s")
    print(f"decode: {t_dec:.2f}s = {changes / t_dec:,.0f} decoded changes/s")
    print(f"assemble into ChangeEvents: {t_asm:.2f}s = {events / t_asm:,.0f} events/s")
    print(f"decode + assemble: {changes / (t_dec + t_asm):,.0f} changes/s")
    print(f"apply to SQLite (identity encoder, 10 transactions per batch, synchronous=FULL): "
          f"{t_apply:.2f}s = {events / t_apply:,.0f} events/s")


if __name__ == "__main__":
    main()
