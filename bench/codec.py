"""Rows/s of RowCodec.encode_row_text on 200k rows x 8 mixed types (PostgreSQL text input).

Types: int8, text, numeric(12,2), timestamptz, jsonb, bool, uuid, bytea. The
input is what COPY text delivers (after unescaping). Prints the figure.
Run: python bench/codec.py [rows]
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pg2edge.translators.codec import row_codec  # noqa: E402
from pg2edge.translators.schema import Column, Table  # noqa: E402

COLUMNS = (
    Column("id", "bigint", "int8"), Column("name", "text", "text"),
    Column("price", "numeric(12,2)", "numeric", typmod=(12 << 16 | 2) + 4),
    Column("created_at", "timestamp with time zone", "timestamptz"), Column("attrs", "jsonb", "jsonb"),
    Column("active", "boolean", "bool"), Column("ref", "uuid", "uuid"), Column("blob", "bytea", "bytea"),
)


def rows(n: int) -> list[tuple[str | None, ...]]:
    out = []
    for i in range(n):
        out.append((str(i), f"Product {i}", f"{i % 1000}.{i % 100:02d}",
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 12:{i % 60:02d}:00.{i % 999999:06d}+00",
                    '{"color": "black", "tags": ["a", "b"], "n": %d}' % i, "t" if i % 2 else "f",
                    str(uuid.UUID(int=i)), "\\x" + (i % 65536).to_bytes(4, "big").hex()))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    data = rows(n)
    codec = row_codec(Table("public", "bench", COLUMNS))
    encode = codec.encode_row_text
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for row in data:
            encode(row)
        best = max(best, n / (time.perf_counter() - start))
    print(f"encode_row_text: {n} rows x {len(COLUMNS)} columns: {best:,.0f} rows/s (best of 3)")


if __name__ == "__main__":
    main()
