"""Foreign-key relations between tables: what must move together, what points at tables that stay."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def connected_groups(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Each node -> the sorted FK-connected component it belongs to (edges are undirected here)."""
    parent: dict[str, str] = {n: n for n in nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    members: dict[str, list[str]] = defaultdict(list)
    for n in parent:
        members[find(n)].append(n)
    return {n: sorted(members[find(n)]) for n in parent}
