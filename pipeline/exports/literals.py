"""SQLite values as SQL literals (D1 scripts take no bound parameters)."""

from __future__ import annotations

import math
from typing import Any

# SQLite reads an out-of-range literal as +/-Inf; NaN is stored as NULL by SQLite itself.
_INF = "9e999"


def sql_literal(value: Any) -> str:
    """One value as a literal that SQLite reads back as the same value and storage class."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # apsw never returns bool, but a caller might
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NULL"
        if math.isinf(value):
            return _INF if value > 0 else f"-{_INF}"
        return repr(value)  # shortest exact round-trip; always has '.', 'e' or is inf/nan
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex().upper() + "'"
    if isinstance(value, str):
        if "\x00" in value or "\r" in value:  # a NUL ends a literal early, a CR may be rewritten by editors
            # and line-ending conversion: spell the bytes instead
            return f"CAST(X'{value.encode('utf-8', 'surrogatepass').hex().upper()}' AS TEXT)"
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__} value {value!r}")
