"""PostgreSQL arrays -> JSON text: the array text format parsed here (quoting, NULL, nesting, empty).

Elements go through the element type's own encoder, then render as JSON:
integers and exact numeric text as JSON numbers, booleans as true/false,
json/jsonb elements embedded as JSON, everything else as JSON strings.
Non-default lower bounds (``[0:1]={...}``) are dropped with an Inexact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from pg2edge.translators.codec.base import Inexact

# How an encoded element is written in JSON.
RAW = "raw"  # the encoder returns JSON text already (numeric text, json)
NUMBER = "number"  # int / float
BOOL = "bool"  # 0/1 -> false/true
STRING = "string"  # any other encoded value, as a JSON string (bytes as \x hex)

_dumps = json.JSONEncoder(ensure_ascii=False).encode


def parse_array(text: str, delim: str = ",") -> tuple[list[Any], bool]:
    """PostgreSQL array text -> (nested lists of str | None, had explicit bounds)."""
    bounded = False
    if text.startswith("["):
        bounded = True
        text = text[text.index("=") + 1:]
    if not text.startswith("{"):
        raise ValueError(f"not a PostgreSQL array: {text[:60]!r}")
    root: list[Any] = []
    stack = [root]
    i, n = 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            new: list[Any] = []
            stack[-1].append(new)
            stack.append(new)
            i += 1
        elif ch == "}":
            stack.pop()
            i += 1
        elif ch == delim:
            i += 1
        elif ch == '"':
            buf = []
            j = i + 1
            while True:
                k = text.find('"', j)
                b = text.find("\\", j, k)
                if b == -1:
                    buf.append(text[j:k])
                    j = k + 1
                    break
                buf.append(text[j:b])
                buf.append(text[b + 1])
                j = b + 2
            stack[-1].append("".join(buf))
            i = j
        else:
            j = i
            while text[j] != delim and text[j] != "}":
                j += 1
            token = text[i:j]
            stack[-1].append(None if token == "NULL" else token)
            i = j
    return root, bounded


def _render(value: Any, render: str) -> str:
    if value is None:
        return "null"
    if render == RAW:
        return str(value)
    if render == NUMBER and not isinstance(value, str):
        if isinstance(value, float) and math.isinf(value):
            raise Inexact("array-float-infinity", "JSON has no Infinity; stored as a JSON string",
                          _dumps("Infinity" if value > 0 else "-Infinity"))
        return repr(value) if isinstance(value, float) else str(value)
    if render == BOOL and not isinstance(value, str):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _dumps("\\x" + bytes(value).hex())
    return _dumps(value if isinstance(value, str) else str(value))


class ArrayEncoder:
    """Encode one array column; ``element_text``/``element_python`` are the element's scalar encoders."""

    __slots__ = ("element_text", "element_python", "render", "delim")

    def __init__(self, element_text: Callable[[str], Any], element_python: Callable[[Any], Any],
                 render: str, delim: str = ",") -> None:
        self.element_text = element_text
        self.element_python = element_python
        self.render = render
        self.delim = delim

    def _json(self, items: list[Any], encode: Callable[[Any], Any], problems: list[Inexact]) -> str:
        parts = []
        for item in items:
            if isinstance(item, list):
                parts.append(self._json(item, encode, problems))
                continue
            if item is None:
                parts.append("null")
                continue
            try:
                parts.append(_render(encode(item), self.render))
            except Inexact as exc:
                problems.append(exc)
                sub = exc.substitute
                parts.append(sub if isinstance(sub, str) and sub.startswith('"') else _dumps(str(sub)))
        return "[" + ",".join(parts) + "]"

    def text(self, text: str) -> str:
        items, bounded = parse_array(text, self.delim)
        problems: list[Inexact] = []
        out = self._json(items, self.element_text, problems)
        if bounded:
            problems.append(Inexact("array-bounds", "non-default array lower bounds are not kept", out))
        if problems:
            first = problems[0]
            raise Inexact(first.code, f"array element: {first.reason}", out)
        return out

    def python(self, value: Any) -> str:
        if isinstance(value, str):
            return self.text(value)
        problems: list[Inexact] = []
        out = self._json(list(value), self.element_python, problems)
        if problems:
            first = problems[0]
            raise Inexact(first.code, f"array element: {first.reason}", out)
        return out
