"""Row comparison: digests decide, deepdiff describes (only rows that differ are deep-diffed)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deepdiff import DeepDiff

from pg2edge.validators.canonical import row_digest
from pg2edge.validators.report import Mismatch
from pg2edge.validators.source import Key, TableSide


def row_diff(columns: Iterable[str], source: tuple[Any, ...], replica: tuple[Any, ...]) -> dict[str, Any]:
    """``{"root['price']": {"source": '9.99', "replica": '9.90'}}`` from ``DeepDiff(pg_row, sqlite_row)``."""

    cols = list(columns)
    found = DeepDiff(dict(zip(cols, source)), dict(zip(cols, replica)))
    out: dict[str, Any] = {}
    for section in ("values_changed", "type_changes"):
        for path, change in found.get(section, {}).items():
            out[path] = {"source": change.get("old_value"), "replica": change.get("new_value")}
    return out


def differing_keys(keys: Iterable[Key], source: Mapping[Key, tuple[Any, ...]],
                   replica: Mapping[Key, tuple[Any, ...]]) -> list[Key]:
    """Keys whose row is absent on one side or whose digests differ (absent on both: not a difference)."""
    out = []
    for key in keys:
        a, b = source.get(key), replica.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None or (a != b and row_digest(a) != row_digest(b)):
            out.append(key)
    return out


def mismatches(side: TableSide, keys: Iterable[Key], source: Mapping[Key, tuple[Any, ...]],
               replica: Mapping[Key, tuple[Any, ...]]) -> list[Mismatch]:
    out = []
    for key in differing_keys(keys, source, replica):
        named = dict(zip(side.key, key))
        a, b = source.get(key), replica.get(key)
        if b is None:
            out.append(Mismatch(named, "missing"))
        elif a is None:
            out.append(Mismatch(named, "extra"))
        else:
            out.append(Mismatch(named, "changed", row_diff(side.codec.columns, a, b)))
    return sorted(out, key=lambda m: repr(tuple(m.key.values())))
