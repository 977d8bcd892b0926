"""PostgreSQL log sequence numbers: '0/16B3748' <-> int."""

from __future__ import annotations

import re

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    """'0/16B3748' -> 23803720; raises ValueError naming the bad text."""
    match = _LSN.match(text.strip())
    if not match:
        raise ValueError(f"not a PostgreSQL LSN: {text!r} (expected like '0/16B3748')")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    """23803720 -> '0/16B3748' (PostgreSQL's own upper-case form)."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"LSN out of range: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
