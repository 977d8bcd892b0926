"""Full comparison: chunk checksums on both sides, bisection of differing chunks down to row digests.

PostgreSQL splits the table into key ranges (``ntile`` over the key) and sums
row digests per range in one scan; SQLite sums the same digests per range with
the registered ``pg2edge_chunksum``. A range whose (count, sum) differ is
split at its middle key (taken from the side with more rows there); since
counts and sums add up, only the left half is queried and the right half is
the difference. At ``leaf_rows`` or fewer rows both sides list key -> digest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pg2edge.validators.canonical import MOD
from pg2edge.validators.replica import ReplicaSnapshot
from pg2edge.validators.source import Key, KeyRange, SourceSnapshot, TableSide, ranges_from


@dataclass
class FullDiff:
    source_rows: int = 0
    chunks: int = 0
    differing_chunks: int = 0
    keys: list[Key] = field(default_factory=list)


def _sub(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] - b[0], (a[1] - b[1]) % MOD


def diff_full(src: SourceSnapshot, rep: ReplicaSnapshot, side: TableSide, *, chunk_rows: int = 1000,
              leaf_rows: int = 64) -> FullDiff:
    result = FullDiff()
    if side.ordered and side.sql_digest:
        # PostgreSQL sums the chunks in its own process while this one sums the replica's
        ranges = ranges_from(src.boundaries(side, chunk_rows=chunk_rows))
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(src.bucket_sums, side, chunk_rows=chunk_rows)
            replica = [rep.range_checksum(side, rng) for rng in ranges]
            sums = pending.result()
        pairs = [(rng, sums.get(i, (0, 0)), replica[i]) for i, rng in enumerate(ranges)]
    else:
        pairs = [(c.range, (c.count, c.total), rep.range_checksum(side, c.range))
                 for c in src.chunks(side, chunk_rows=chunk_rows)]
    result.chunks = len(pairs)
    for rng, mine, theirs in pairs:
        result.source_rows += mine[0]
        if mine != theirs:
            result.differing_chunks += 1
            _bisect(src, rep, side, rng, mine, theirs, leaf_rows, result.keys)
    return result


def _bisect(src: SourceSnapshot, rep: ReplicaSnapshot, side: TableSide, rng: KeyRange, mine: tuple[int, int],
            theirs: tuple[int, int], leaf_rows: int, out: list[Key]) -> None:
    n = max(mine[0], theirs[0])
    if n <= leaf_rows or not side.ordered:
        a = src.range_digests(side, rng)
        b = rep.range_digests(side, rng)
        out.extend(k for k in sorted(a.keys() | b.keys(), key=repr) if a.get(k) != b.get(k))
        return
    mid = (src.split_key(side, rng, mine[0] // 2 - 1) if mine[0] >= theirs[0]
           else rep.split_key(side, rng, theirs[0] // 2 - 1))
    if mid is None:  # cannot split (should not happen with n > 1): compare the rows
        _bisect(src, rep, side, rng, mine, theirs, n, out)
        return
    left = KeyRange(rng.lo, mid)
    right = KeyRange(mid, rng.hi)
    mine_left = src.range_checksum(side, left)
    theirs_left = rep.range_checksum(side, left)
    if mine_left != theirs_left:
        _bisect(src, rep, side, left, mine_left, theirs_left, leaf_rows, out)
    mine_right, theirs_right = _sub(mine, mine_left), _sub(theirs, theirs_left)
    if mine_right != theirs_right:
        _bisect(src, rep, side, right, mine_right, theirs_right, leaf_rows, out)
