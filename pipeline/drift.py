"""Schema drift: compare a Relation message with the columns the replica last saw, and plan what follows.

:func:`plan` is the one drift rule every SQL sink runs (SQLite file, libSQL, D1):
it returns the table's new state and the ``ALTER TABLE ... ADD COLUMN``
statements; each sink runs them its own way (at once, or in its batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pg2edge.pipeline.sources.pgoutput import Column, Relation
from pg2edge.pipeline.state import TableState
from pg2edge.translators.findings import Finding, Level
from pg2edge.translators.quoting import quote_ident

if TYPE_CHECKING:
    from pg2edge.pipeline.sinks.statements import TableMapping

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class DriftPlan:
    """What a Relation message asks of one replica table."""

    state: TableState  # after the message: paused, or with the message's columns recorded
    statements: tuple[tuple[str, tuple[Any, ...]], ...]  # ALTER TABLE ... ADD COLUMN, in order
    added: tuple[str, ...]  # the replica columns those statements add
    findings: tuple[Finding, ...]

    @property
    def changed(self) -> bool:
        """Anything beyond recording the columns (fallback mode reads the catalog then)."""
        return bool(self.added or self.state.paused or self.findings)

    def log(self) -> None:
        for f in self.findings:
            log.log(logging.ERROR if f.level >= Level.ERROR else logging.WARNING, "schema drift: %s", f)


def plan(rel: Relation, ts: TableState, mapping: TableMapping, replica_columns: Sequence[str], *,
         commit_lsn: int) -> DriftPlan:
    """The drift rule for one Relation message of a mapped, unpaused table: compare it (:func:`compare`)
    with the recorded columns and the replica's; pause the table on a dropped or retyped column, else add
    the new columns with the codec's declared type (``mapping.column_type``)."""
    present = list(replica_columns)
    if mapping.skip:  # not copied by design: never "added" to the replica
        present += [c.name for c in rel.columns if mapping.skip(c.name)]
    d = compare(rel, ts.columns, present)
    if d.pause:
        reason = "; ".join(str(f) for f in d.findings if f.level >= Level.ERROR)
        return DriftPlan(replace(ts, paused=True, pause_reason=reason, paused_at_lsn=commit_lsn), (), (), d.findings)
    stmts = []
    for col in d.added:
        decl = mapping.column_type(col) if mapping.column_type else ""
        stmts.append((f"ALTER TABLE {quote_ident(mapping.target)} ADD COLUMN {quote_ident(col.name)} {decl}".rstrip(),
                      ()))
    return DriftPlan(replace(ts, columns=columns_record(rel)), tuple(stmts), tuple(c.name for c in d.added),
                     d.findings)
