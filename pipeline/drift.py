"""Schema drift: compare a Relation message with the columns the replica last saw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pg2edge.pipeline.sources.pgoutput import Column, Relation
from pg2edge.translators.findings import Finding, Level


@dataclass(frozen=True, slots=True)
class Drift:
    """What changed in one relation: columns to add on the replica, findings, whether to pause."""

    added: tuple[Column, ...]
    findings: tuple[Finding, ...]
    pause: bool


def columns_record(rel: Relation) -> list[list[Any]]:
    return [[c.name, c.type_oid, c.type_modifier] for c in rel.columns]


def compare(rel: Relation, known: Sequence[Sequence[Any]], replica_columns: Sequence[str]) -> Drift:
    """Compare ``rel`` with the last known ``[[name, type_oid, typmod], ...]`` and the replica's columns.

    A dropped column or a changed type OID pauses the table (the replica can
    no longer be kept equal by row changes alone); a changed type modifier
    (``varchar(10)`` -> ``varchar(20)``) is a warning; a new column, or a
    source column missing on the replica, is added.
    """
    obj = f"{rel.schema}.{rel.name}"
    findings: list[Finding] = []
    pause = False
    old = {str(n): (int(t), int(m)) for n, t, m in known}
    new = {c.name: c for c in rel.columns}
    if old:
        for name, (oid, typmod) in old.items():
            col = new.get(name)
            if col is None:
                pause = True
                findings.append(Finding(Level.ERROR, "column-dropped", f"{obj}.{name}",
                                        "column dropped (or renamed) on the source; stream of this table paused"))
            elif col.type_oid != oid:
                pause = True
                findings.append(Finding(Level.ERROR, "column-retyped", f"{obj}.{name}",
                                        f"type OID changed {oid} -> {col.type_oid} on the source; "
                                        "stream of this table paused"))
            elif col.type_modifier != typmod:
                findings.append(Finding(Level.WARN, "column-typmod-changed", f"{obj}.{name}",
                                        f"type modifier changed {typmod} -> {col.type_modifier}"))
    have = set(replica_columns)
    added = tuple(c for c in rel.columns if c.name not in have)
    for col in added:
        findings.append(Finding(Level.INFO, "column-added", f"{obj}.{col.name}",
                                "column added on the source; ALTER TABLE ADD COLUMN on the replica"))
    return Drift(added=added, findings=tuple(findings), pause=pause)
