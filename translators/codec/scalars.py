"""Numbers, booleans, text-like and binary values: PostgreSQL text (or Python) -> SQLite value.

Each encoder takes one non-NULL value and returns the SQLite value, or raises
``Inexact`` with the substitute it would store. NULL never reaches them.
"""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from typing import Any

from pg2edge.translators.codec.base import Inexact

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_SPECIAL_NUMERIC = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


def text_as_is(text: str) -> str:
    return text


def python_str(value: Any) -> str:
    return str(value)


# -- integers -------------------------------------------------------------------------------------------
def int_text(text: str) -> int:
    return int(text)


def int_python(value: Any) -> int:
    return int(value)


# -- booleans -------------------------------------------------------------------------------------------
_BOOL = {"t": 1, "f": 0, "true": 1, "false": 0}


def bool_text(text: str) -> int:
    try:
        return _BOOL[text]
    except KeyError:
        raise ValueError(f"not a PostgreSQL boolean: {text!r}") from None


def bool_python(value: Any) -> int:
    return 1 if value else 0


# -- numeric --------------------------------------------------------------------------------------------
def decimal_text(value: Decimal) -> str:
    """PostgreSQL's text for a Decimal: plain notation, scale kept, NaN/Infinity spelled as PostgreSQL does."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    return format(value, "f")


def numeric_text(text: str) -> str:
    """numeric -> TEXT: PostgreSQL's canonical text is already exact (NaN/Infinity included)."""
    return text


def numeric_json_text(text: str) -> str:
    """numeric as a JSON number (array elements): NaN/Infinity have no JSON number -> Inexact (a JSON string)."""
    if text in _SPECIAL_NUMERIC:
        raise Inexact("numeric-special", f"numeric {text} has no JSON number form; stored as a JSON string",
                      '"' + text + '"')
    return text


def numeric_json_python(value: Any) -> str:
    return numeric_json_text(decimal_text(value) if isinstance(value, Decimal) else str(value))


def numeric_python(value: Any) -> str:
    return decimal_text(value) if isinstance(value, Decimal) else numeric_text(str(value))


def numeric_int_text(text: str) -> int:
    """numeric with scale 0 -> INTEGER; outside 64 bits or not integral -> Inexact (keeps the text)."""
    if text in _SPECIAL_NUMERIC:
        raise Inexact("numeric-special", f"numeric {text} has no INTEGER form", text)
    if "." in text:
        head, _, tail = text.partition(".")
        if tail.strip("0"):
            raise Inexact("numeric-fraction", "numeric with a fraction in an INTEGER column", text)
        text = head
    number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        raise Inexact("numeric-range", "numeric beyond 64-bit INTEGER", text)
    return number


def numeric_int_python(value: Any) -> int:
    return numeric_int_text(decimal_text(value) if isinstance(value, Decimal) else str(value))


def numeric_real_text(text: str) -> float:
    """numeric -> REAL (opt-in): exact only when the float prints back to the same number."""
    if text in _SPECIAL_NUMERIC:
        if text == "NaN":
            raise Inexact("numeric-nan", "NaN has no REAL form in SQLite (it becomes NULL)", text)
        return math.inf if text == "Infinity" else -math.inf
    number = float(text)
    if Decimal(repr(number)) != Decimal(text):
        raise Inexact("numeric-precision", "numeric has more digits than a REAL keeps", number)
    return number


def numeric_real_python(value: Any) -> float:
    return numeric_real_text(decimal_text(value) if isinstance(value, Decimal) else str(value))


# -- floating point -------------------------------------------------------------------------------------
def _exact_real(number: float) -> float:
    """The REAL SQLite stores for ``number``; NaN and -0 have none (the exactness list, both Inexact)."""
    if number != number:
        raise Inexact("float-nan", "NaN has no REAL form in SQLite (it becomes NULL); stored as TEXT 'NaN'", "NaN")
    if number == 0.0 and math.copysign(1.0, number) < 0:
        # A REAL column stores a whole-valued REAL as an integer on disk, so -0.0 reads back as 0.0
        # (and a TEXT '-0' is converted by the column's REAL affinity the same way).
        raise Inexact("float-negative-zero", "SQLite keeps no sign of zero in a REAL column: -0 is stored as 0",
                      0.0)
    return number


def float_text(text: str) -> float:
    """float4/float8 -> REAL; ±Infinity are exact REALs; NaN (TEXT 'NaN') and -0 (0.0) are Inexact."""
    return _exact_real(float(text))


def float_python(value: Any) -> float:
    return _exact_real(float(value))


# -- uuid -----------------------------------------------------------------------------------------------
def uuid_text(text: str) -> str:
    return text.lower()


def uuid_python(value: Any) -> str:
    return str(value) if isinstance(value, uuid.UUID) else str(value).lower()


# -- bytea ----------------------------------------------------------------------------------------------
def bytea_text(text: str) -> bytes:
    """bytea text output: hex (``\\x0a0b``) or the old escape format (``\\012`` and ``\\\\``)."""
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out += ch.encode("latin-1")
            i += 1
        elif text[i + 1:i + 2] == "\\":
            out.append(0x5C)
            i += 2
        else:
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
    return bytes(out)


def bytea_python(value: Any) -> bytes:
    return bytes(value)
