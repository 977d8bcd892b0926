"""The one SQLite identifier quoting helper; every SQLite statement we build uses it."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Quote a SQLite identifier: wrap in double quotes, double any inside.

    NUL cannot appear in a SQLite identifier; it is rejected by name.
    """
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(schema: str | None, name: str) -> str:
    """``"schema"."name"`` (or just ``"name"``) for attached databases."""
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)
