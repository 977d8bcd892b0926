"""Cutover actions on the source and the replica: write freeze, unfreeze, replica backup."""

from __future__ import annotations

CUTOVER_SCOPE = "cutover"
