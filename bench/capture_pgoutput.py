"""Capture real pgoutput payloads from a throwaway PostgreSQL into tests/data/pgoutput_v1.json.

Run: PYTHONPATH=. python bench/capture_pgoutput.py  (re-run only when the decoder tests need new cases)
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from pg2edge.pgcluster import LocalCluster
from pg2edge.pipeline.sources import pgoutput
from pg2edge.pipeline.sources.replication import ReplicationStream, create_slot

STEPS = [
    ("insert", "INSERT INTO t VALUES (1, 'a', NULL)"),
    ("insert_toast", "INSERT INTO t SELECT 2, 'b', string_agg(md5(random()::text), '') FROM generate_series(1, 400)"),
    ("update_toast_unchanged", "UPDATE t SET name = 'bb' WHERE id = 2"),
    ("update_key_change", "UPDATE t SET id = 3 WHERE id = 1"),
    ("delete_key", "DELETE FROM t WHERE id = 3"),
    ("insert_full", "INSERT INTO f VALUES (1, 'x''y')"),
    ("update_full", "UPDATE f SET b = NULL"),
    ("delete_full", "DELETE FROM f"),
    ("truncate", "TRUNCATE t, f RESTART IDENTITY"),
    ("message", "SELECT pg_logical_emit_message(false, 'pg2edge', 'hb')"),
]


def main() -> None:
    out: dict[str, list[str]] = {}
    with LocalCluster() as cluster:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text, big text)")
            conn.execute("CREATE TABLE f (a int, b text)")
            conn.execute("ALTER TABLE f REPLICA IDENTITY FULL")
            conn.execute("CREATE PUBLICATION p FOR TABLE t, f")
        lsn = create_slot(dsn, "s")
        with ReplicationStream(dsn, slot="s", publications=["p"], start_lsn=lsn) as stream:
            for name, stmt in STEPS:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(stmt)
                frames = []
                while (x := stream.read(timeout=1.0)) is not None:
                    frames.append(x.payload.hex())
                    if isinstance(pgoutput.decode(x.payload), (pgoutput.Commit, pgoutput.LogicalMessage)):
                        break
                out[name] = frames
    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "pgoutput_v1.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {sum(map(len, out.values()))} messages to {path}")


if __name__ == "__main__":
    main()
