"""Benchmark: analyze() over 1,000 tables with traffic (bar: < 3 s).

Usage: ./dev bench analyze [--tables 1000]   (starts a throwaway PostgreSQL)
"""

from __future__ import annotations

import argparse
import platform
import time

import psycopg

from pg2edge.analyzers import analyze
from pg2edge.pgcluster import LocalCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with LocalCluster() as cluster:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"""DO $$ BEGIN FOR i IN 1..{args.tables} LOOP
                EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, name text, price numeric(10,2),
                                created timestamptz DEFAULT now(), ref bigint)', i);
                IF i > 1 AND i % 10 = 0 THEN
                    EXECUTE format('ALTER TABLE t%s ADD FOREIGN KEY (ref) REFERENCES t%s (id)', i, i - 1);
                END IF;
                EXECUTE format('INSERT INTO t%s (id, name, price) SELECT g, ''n'' || g, g FROM generate_series(1, %s) g', i, 1 + i % 7);
                EXECUTE format('SELECT count(*) FROM t%s', i);
                END LOOP; END $$""")
            conn.execute("ANALYZE")
        time.sleep(1.2)  # statistics flush
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            report = analyze(dsn)
            timings.append(time.perf_counter() - started)
        assert len(report.tables) == args.tables, len(report.tables)
        best, worst = min(timings), max(timings)
        print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
        print(f"analyze() over {args.tables} tables: best {best:.3f} s, worst {worst:.3f} s "
              f"({args.repeat} runs; bar < 3 s) -> {'PASS' if worst < 3 else 'FAIL'}")


if __name__ == "__main__":
    main()
