"""The one verdict rule table: read/write ratio thresholds -> verdict (configurable)."""

from __future__ import annotations

from pg2edge.config import VerdictRules

VERDICT_ORDER = ("excellent", "good", "maybe", "keep", "idle")
MOVABLE = frozenset({"excellent", "good", "maybe"})


def verdict(ratio: float | None, rules: VerdictRules) -> str:
    """``idle`` without traffic; otherwise the first rule whose threshold the ratio reaches."""
    if ratio is None:
        return "idle"
    for name, threshold in (("excellent", rules.excellent), ("good", rules.good), ("maybe", rules.maybe)):
        if ratio >= threshold:
            return name
    return "keep"
