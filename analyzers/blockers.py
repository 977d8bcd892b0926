"""Blockers (a move is not possible as is) and warnings (it needs care), each with a stable code.

Codes: ``no_primary_key``, ``unsupported_type``, ``fk_to_kept_table``,
``too_large``, ``row_too_large`` (blockers); ``referenced_by_kept_table``,
``lossy_type``, ``has_triggers``, ``partitioned``, ``sequence``,
``dataset_size`` (warnings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pg2edge.analyzers.catalog import ColumnFact, TableFacts
from pg2edge.analyzers.model import Issue

GB = 1024**3
MB = 1024**2


@dataclass(frozen=True, slots=True)
class TargetProfile:
    name: str
    database_bytes: int | None  # per database file
    row_bytes: int | None


PROFILES = {
    "sqlite": TargetProfile("sqlite", None, 1_000_000_000),  # SQLITE_MAX_LENGTH default
    "litefs": TargetProfile("litefs", None, 1_000_000_000),
    "turso": TargetProfile("turso", None, 1_000_000_000),
    "d1": TargetProfile("d1", 10 * GB, 1 * MB),
}

# Column types without a faithful SQLite mapping: (blocker?, reason). One table, keyed by
# what the catalog says of the type. The translators' type rules are the fuller source for
# how each type is stored; this table only decides what blocks a move.
_UNSUPPORTED_NAMES: dict[str, tuple[bool, str]] = {
    "tsvector": (True, "full-text vectors are not copied (an FTS5 companion table is needed)"),
    "tsquery": (True, "full-text queries have no SQLite equivalent"),
    "xml": (False, "stored as TEXT; XML functions are lost"),
    "money": (False, "stored as TEXT with the currency format of the source locale"),
    "bit": (False, "stored as TEXT"),
    "varbit": (False, "stored as TEXT"),
    "interval": (False, "stored as ISO-8601 duration TEXT; arithmetic needs rewriting"),
    "timetz": (False, "time with time zone is stored as TEXT"),
}
_UNSUPPORTED_CATEGORIES: dict[str, tuple[bool, str]] = {
    "G": (True, "geometric types have no SQLite equivalent (stored as TEXT only with a finding)"),
    "R": (True, "range types have no SQLite equivalent (stored as TEXT only with a finding)"),
}
_UNSUPPORTED_KINDS: dict[str, tuple[bool, str]] = {
    "r": (True, "range types have no SQLite equivalent"),
    "m": (True, "multirange types have no SQLite equivalent"),
    "p": (True, "pseudo-types cannot be stored"),
}


def type_issue(col: ColumnFact) -> tuple[bool, str] | None:
    """(is_blocker, reason) when a column's type has no faithful SQLite mapping, else None."""
    for typname, typtype, category in (
        (col.typname, col.typtype, col.typcategory),
        (col.base_typname, col.base_typtype, col.base_typcategory),
    ):
        if typname is None:
            continue
        name = typname.lstrip("_")
        if name in _UNSUPPORTED_NAMES:
            return _UNSUPPORTED_NAMES[name]
        if typtype in _UNSUPPORTED_KINDS:
            return _UNSUPPORTED_KINDS[typtype]
        if category in _UNSUPPORTED_CATEGORIES:
            return _UNSUPPORTED_CATEGORIES[category]
    return None


def table_issues(facts: TableFacts, *, profile: TargetProfile,
                 max_row: Callable[[TableFacts], int]) -> tuple[list[Issue], list[Issue]]:
    """Blockers and warnings that depend on the table alone (FKs are handled by the caller)."""
    blockers: list[Issue] = []
    warnings: list[Issue] = []
    if facts.replident == "n" or (facts.replident == "d" and not facts.has_pk):
        blockers.append(Issue("no_primary_key",
                              f"{facts.qualified} has no primary key and no usable replica identity: "
                              "logical replication cannot identify its rows (add a primary key, or "
                              "REPLICA IDENTITY FULL / USING INDEX)"))
    for col in facts.columns:
        issue = type_issue(col)
        if issue is None:
            continue
        is_blocker, reason = issue
        target = blockers if is_blocker else warnings
        target.append(Issue("unsupported_type" if is_blocker else "lossy_type",
                            f"{facts.qualified}.{col.name} ({col.type}): {reason}"))
    for col in facts.columns:
        if col.identity in ("a", "d") or (col.default or "").startswith("nextval("):
            source = "an identity column" if col.identity in ("a", "d") else col.default
            warnings.append(Issue("sequence",
                                  f"{facts.qualified}.{col.name} takes its values from {source}: after cutover, "
                                  "inserts on SQLite must continue past the source sequence"))
    if facts.triggers:
        warnings.append(Issue("has_triggers",
                              f"{facts.qualified} has {facts.triggers} trigger(s): their logic does not move to SQLite"))
    if facts.partitioned:
        warnings.append(Issue("partitioned",
                              f"{facts.qualified} is partitioned: its partitions are folded into one SQLite table"))
    if profile.database_bytes is not None and facts.bytes > profile.database_bytes:
        blockers.append(Issue("too_large",
                              f"{facts.qualified} is {facts.bytes / GB:.1f} GB; {profile.name} allows "
                              f"{profile.database_bytes / GB:.0f} GB per database"))
    if profile.row_bytes is not None and profile.row_bytes < 1_000_000_000 and facts.toast_bytes > 0:
        largest = max_row(facts)
        if largest > profile.row_bytes:
            blockers.append(Issue("row_too_large",
                                  f"{facts.qualified} has rows of {largest / MB:.1f} MB; {profile.name} allows "
                                  f"{profile.row_bytes / MB:.0f} MB per row"))
    return blockers, warnings
