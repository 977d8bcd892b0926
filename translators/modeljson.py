"""The schema model as JSON (and back): what a Kafka schema record carries to replicas.

``model_to_json`` / ``model_from_json`` turn the frozen dataclasses of
:mod:`pg2edge.translators.schema` into plain JSON values and back, field by
field, so a replica rebuilds exactly the ``Table`` the publisher introspected
and runs the same DDL planner and value codec on it (one set of type rules).
Unknown keys are refused by name: a model from a newer pg2edge is never
half-read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pg2edge.errors import Pg2EdgeError
from pg2edge.translators.schema import Check, Column, Domain, Enum, ForeignKey, Index, Schema, Table, Unique, View


class ModelFormatError(Pg2EdgeError):
    """A serialised schema model has a field this version does not know, or lacks one it needs."""


# field -> the class of its elements (tuples of dataclasses) or of itself (one nested dataclass)
_NESTED: dict[type, dict[str, type]] = {
    Column: {"domain": Domain},
    Table: {"columns": Column, "uniques": Unique, "checks": Check, "foreign_keys": ForeignKey, "indexes": Index},
    Schema: {"tables": Table, "enums": Enum, "domains": Domain, "views": View},
}
_SKIP: dict[type, set[str]] = {Schema: {"findings"}}


def model_to_json(obj: Any) -> Any:
    """A schema-model dataclass (or tuple of them) as JSON values; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = _SKIP.get(type(obj), set())
        return {f.name: model_to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip}
    if isinstance(obj, tuple | list):
        return [model_to_json(x) for x in obj]
    return obj


def model_from_json(cls: type, data: Mapping[str, Any]) -> Any:
    """The ``cls`` instance (Table, Column, Schema, ...) that ``model_to_json`` gave ``data`` for."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ModelFormatError(f"{cls.__name__} has no field {unknown[0]!r} (written by a newer pg2edge?)")
    nested = _NESTED.get(cls, {})
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in nested and value is not None:
            inner = nested[name]
            kwargs[name] = (tuple(model_from_json(inner, v) for v in value) if isinstance(value, list)
                            else model_from_json(inner, value))
        elif isinstance(value, list):
            kwargs[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ModelFormatError(f"{cls.__name__}: {exc}") from None


def table_to_json(table: Table) -> dict[str, Any]:
    out = model_to_json(table)
    assert isinstance(out, dict)
    return out


def table_from_json(data: Mapping[str, Any]) -> Table:
    table = model_from_json(Table, data)
    assert isinstance(table, Table)
    return table
