"""The sink protocol: what the engine asks of every target.

A sink owns one thing: apply a batch of whole source transactions atomically
together with its position, and say which position is durable. The engine
(:mod:`pg2edge.pipeline.engine`) owns the loop, batching, stop conditions,
acknowledgement and metrics; it acknowledges to the source only what
``durable`` says survives a power loss (a SQLite file syncs off the apply path:
:mod:`.walsync`).

Items that are not transactions reach a sink through ``control``: the bounds of
a snapshot carried by a Kafka topic, its rows (``SnapshotRows``), and
watermarks (a heartbeat passed: every source change below ``lsn`` is applied).
A sink that cannot take an item raises a :class:`~pg2edge.errors.Pg2EdgeError`
naming the target and the item.

A new target is one module in this folder with a class that follows
:class:`Sink`, plus its registration in :mod:`pg2edge.pipeline.sinks.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pg2edge.pipeline.events import Control, Transaction
from pg2edge.pipeline.state import Position
from pg2edge.translators.findings import Finding


@dataclass(slots=True)
class ApplyResult:
    applied: int = 0  # transactions
    skipped: int = 0  # transactions at or below the stored position
    rows: int = 0  # row events applied
    paused_events: int = 0  # events of paused tables not applied
    findings: list[Finding] = field(default_factory=list)
    position: Position | None = None  # applied and visible when apply returns (durable: Sink.durable)


@runtime_checkable
class Sink(Protocol):
    """A target the engine writes to."""

    label: str  # names the target in messages; never holds a secret

    def position(self) -> Position | None:
        """The position stored in the target with the data (None: nothing applied yet)."""
        ...

    def durable(self, *, wait: bool = False) -> Position | None:
        """The newest applied position that survives a power loss: the engine acknowledges only this to
        the source. ``wait``: make everything applied durable now (the engine's last turn)."""
        ...

    def apply(self, batch: Sequence[Transaction]) -> ApplyResult:
        """Apply whole transactions and the new position in one atomic unit; skip those at or below
        the stored position. ``batch[-1].cursor`` (a Kafka offset) is stored with the position."""
        ...

    def control(self, item: Control) -> None:
        """A snapshot bound, snapshot rows or a watermark, at its place in the stream."""
        ...

    def maintain(self) -> None:
        """Periodic work between batches (the retry queue's due changes)."""
        ...

    def close(self) -> None: ...
