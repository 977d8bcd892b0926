"""JSON, ranges and the text-stored types (inet, macaddr, money, xml, bit, geometric)."""

from __future__ import annotations

import json
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False).encode


def json_text(text: str) -> str:
    """json/jsonb text is already valid JSON (jsonb's text is already normalized): kept as is."""
    return text


def json_python(value: Any) -> str:
    """psycopg-loaded JSON -> text. Same as PostgreSQL's jsonb text for ordinary values (separators ', ' ': ')."""
    return _dumps(value)


def range_python(value: Any) -> str:
    """psycopg Range -> PostgreSQL range text ('[1,5)', 'empty')."""
    if isinstance(value, str):
        return value
    if value.isempty:
        return "empty"
    lower = "" if value.lower is None else str(value.lower)
    upper = "" if value.upper is None else str(value.upper)
    return f"{value.bounds[0]}{lower},{upper}{value.bounds[1]}"
