"""Decoded pgoutput changes per second from a real backlog (~200k changes).

Run: PYTHONPATH=. python bench/pgoutput_decode.py [--rows 200000] [--dsn DSN] [--repeat 3]
Without --dsn a throwaway PostgreSQL cluster is started. The backlog is
inserts, updates and deletes across 2000-row transactions; frames are first
received into memory, then decoded (and assembled into events) from memory so
the figure is the decoder's own speed, not the network's. Decode, assemble and
plan (``Planner.plan`` with the table's real codec, as every SQL sink runs it)
are timed ``--repeat`` times, best kept, in wall time and in this process's CPU
time (the CPU figure moves less on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from pg2edge.config import TranslateConfig
from pg2edge.pgcluster import LocalCluster
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.mappings import mapping_for
from pg2edge.pipeline.sinks.sqlite import Applier, TableMapping, open_replica
from pg2edge.pipeline.sinks.statements import Planner, TargetTable
from pg2edge.pipeline.sources import pgoutput
from pg2edge.pipeline.sources.assembler import Assembler
from pg2edge.pipeline.sources.replication import ReplicationStream, create_slot, drop_slot
from pg2edge.translators.introspect import introspect

T = TypeVar("T")


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


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, float, T]:
    """(best wall seconds, best CPU seconds, the result) of ``repeat`` runs of ``work``."""
    wall = cpu = float("inf")
    result: Any = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = work()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dsn")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of decode, assemble and plan (best kept)")
    args = ap.parse_args()
    with source(args.dsn) as dsn:
        make_backlog(dsn, args.rows)
        payloads: list[bytes] = []
        lsns: list[int] = []
        t0 = time.perf_counter()
        with ReplicationStream(dsn, slot="bench_slot", publications=["bench_pub"]) as stream:
            while (frame := stream.read(timeout=2.0)) is not None:
                payloads.append(frame.payload)
                lsns.append(frame.wal_start)
        t_recv = time.perf_counter() - t0 - 2.0  # the last read waited 2 s for nothing
        drop_slot(dsn, "bench_slot")
        with psycopg.connect(dsn, autocommit=True) as conn:
            table = introspect(conn, tables=["bench_orders"]).table("public.bench_orders")
        mapping = mapping_for(dsn, table, TranslateConfig())

    t_dec, c_dec, decoded = best_of(args.repeat, lambda: [pgoutput.decode(p) for p in payloads])
    changes = sum(isinstance(m, (pgoutput.Insert, pgoutput.Update, pgoutput.Delete)) for m in decoded)

    def assemble() -> list[Transaction]:
        asm = Assembler()
        out = []
        for m, lsn in zip(decoded, lsns):
            item = asm.feed(m, lsn=lsn)
            if isinstance(item, Transaction):
                out.append(item)
        return out

    t_asm, c_asm, txns = best_of(args.repeat, assemble)
    events = sum(len(t.events) for t in txns)
    target = TargetTable("bench_orders", tuple(c.name for c in table.columns), ("id",))

    def plan() -> int:
        planner = Planner()
        return sum(len(planner.plan(ev, mapping, target)) for txn in txns for ev in txn.events)

    t_plan, c_plan, _ = best_of(args.repeat, plan)

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

    print(f"load average {os.getloadavg()[0]:.1f} (2 cores shared: compare runs made together)")
    print(f"backlog: {len(payloads)} pgoutput messages, {changes} row changes, {events} events")
    print(f"receive (stream from PostgreSQL): {t_recv:.2f}s = {len(payloads) / t_recv:,.0f} messages/s")
    print(f"decode: {changes / t_dec:,.0f} decoded changes/s (CPU time: {changes / c_dec:,.0f}/s)")
    print(f"assemble into ChangeEvents: {events / t_asm:,.0f} events/s (CPU time: {events / c_asm:,.0f}/s)")
    print(f"decode + assemble: {changes / (t_dec + t_asm):,.0f} changes/s (CPU time: {changes / (c_dec + c_asm):,.0f}/s)")
    print(f"plan (Planner.plan with the table's codec): {events / t_plan:,.0f} events/s "
          f"(CPU time: {events / c_plan:,.0f}/s)")
    print(f"apply to SQLite (identity encoder, 10 transactions per batch, synchronous=FULL): "
          f"{t_apply:.2f}s = {events / t_apply:,.0f} events/s")


if __name__ == "__main__":
    main()
