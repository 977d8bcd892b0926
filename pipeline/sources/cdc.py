"""The logical-decoding source: replication stream -> decoder -> assembler -> whole Transactions.

``CdcSource`` follows the engine's Source protocol. Its periodic work sends
heartbeats (``pg_logical_emit_message``) on one kept connection, so an idle
publication does not pin WAL, and samples the WAL the slot retains. A
heartbeat that comes back through the slot becomes a ``Watermark`` item once
every transaction delivered before it was acknowledged: the sink records it
(every change below that LSN is applied) and the slot is acknowledged up to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pg2edge import dsn as dsnlib
from pg2edge.errors import Pg2EdgeError, SourceError
from pg2edge.pipeline import engine
from pg2edge.pipeline.events import Item, Transaction, Watermark
from pg2edge.pipeline.lsn import parse_lsn
from pg2edge.pipeline.metrics import Metrics
from pg2edge.pipeline.sinks.base import ApplyResult, Sink
from pg2edge.pipeline.sources import pgoutput
from pg2edge.pipeline.sources.assembler import Assembler, Heartbeat
from pg2edge.pipeline.sources.replication import ReplicationStream, slot_status
from pg2edge.pipeline.state import Position, StreamInfo

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "pg2edge.heartbeat"
RETAINED_WAL_WARN_BYTES = 1024**3
SLOT_SAMPLE_INTERVAL = 5.0  # seconds between two retained-WAL queries


class Heartbeater:
    """Emits heartbeat messages on the run's control connection; a failed beat is retried next interval."""

    def __init__(self, dsn: str, *, interval: float = 1.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self._last = 0.0

    def maybe_beat(self) -> int | None:
        """Beat when ``interval`` seconds have passed since the last beat."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return None
        self._last = now
        return self.beat()

    def beat(self) -> int | None:
        try:
            with dsnlib.control(self.dsn) as conn:
                row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'beat')::text",
                                   (HEARTBEAT_PREFIX,)).fetchone()
            return parse_lsn(str(row[0])) if row else None
        except (psycopg.OperationalError, Pg2EdgeError) as exc:
            log.warning("heartbeat not sent (%s); retrying at the next interval", exc)
            return None

    def close(self) -> None:
        """Nothing to close: the control connection belongs to the run."""


def current_wal_lsn(dsn: str) -> int:
    """The source's current WAL position (on the run's control connection)."""
    with dsnlib.control(dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return parse_lsn(str(row[0]))


class CdcSource:
    """Whole committed transactions from a pgoutput slot, in commit order.

    ``until_caught_up``: finished once the sink's visible position reaches the
    source's WAL position taken at start. ``heartbeat_interval=None`` sends no
    heartbeats (tests of the stream alone).
    """

    def __init__(self, stream: ReplicationStream, *, heartbeat_interval: float | None = None,
                 until_caught_up: bool = False, retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES,
                 max_transactions: int = 1000, max_events: int = 50_000) -> None:
        self.stream = stream
        self.label = f"slot {stream.slot}"
        self.assembler = Assembler(capture=stream.slot)  # schema-change messages of this slot's triggers
        self._generation = stream.generation
        self.last_heartbeat: Heartbeat | None = None
        self._delivered_end = 0  # end LSN of the last transaction handed out
        self._acked = stream.flushed_lsn
        self.max_transactions, self.max_events = max_transactions, max_events
        self.heart = Heartbeater(stream.dsn, interval=heartbeat_interval) if heartbeat_interval else None
        self.goal = current_wal_lsn(stream.dsn) if until_caught_up else None
        self.warn_bytes = retained_wal_warn_bytes
        self._retained: int | None = None
        self._sampled: float | None = None

    # -- engine protocol ---------------------------------------------------------------
    def tick(self) -> None:
        if self.heart is not None:
            self.heart.maybe_beat()
        now = time.monotonic()
        if self.heart is not None and (self._sampled is None or now - self._sampled >= SLOT_SAMPLE_INTERVAL):
            self._sampled = now
            self._sample_slot()

    def poll(self, *, max_wait: float) -> list[Item]:
        """A pending watermark first, then :meth:`batch`."""
        items: list[Item] = []
        beat = self.ack_heartbeat()
        if beat is not None:
            items.append(Watermark(beat))
        items.extend(self.batch(max_transactions=self.max_transactions, max_events=self.max_events,
                                max_wait=0.0 if items else max_wait))
        return items

    def ack(self, position: Position | int) -> None:
        """The sink durably committed everything up to ``position`` (a Position, or a commit's end LSN)."""
        lsn = position if isinstance(position, int) else position.end_lsn
        self._acked = max(self._acked, lsn)
        self.stream.ack(lsn)

    def finished(self, reached: Position | None) -> str | None:
        if self.goal is not None and reached is not None and reached.visible_lsn >= self.goal:
            return "caught up"
        return None

    @property
    def server_wal_end(self) -> int:
        return self.stream.server_wal_end

    @property
    def retained_wal_bytes(self) -> int | None:
        return self._retained

    def close(self) -> None:
        if self.heart is not None:
            self.heart.close()
        self.stream.close()

    # -- the stream --------------------------------------------------------------------
    def _sample_slot(self) -> None:
        """The slot's retained WAL; a failed query keeps the last value (the stream reports real outages)."""
        try:
            status = slot_status(self.stream.dsn, self.stream.slot)
        except SourceError as exc:
            log.warning("retained WAL of slot %s not sampled: %s", self.stream.slot, exc)
            return
        if status is None:
            return
        self._retained = status.retained_wal_bytes
        if status.retained_wal_bytes > self.warn_bytes:
            log.warning("slot %s retains %d bytes of WAL on the source (threshold %d)",
                        self.stream.slot, status.retained_wal_bytes, self.warn_bytes)

    def next(self, *, timeout: float) -> Transaction | Heartbeat | None:
        """The next Transaction or Heartbeat, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.stream.read(timeout=max(deadline - time.monotonic(), 0.0))
            if self.stream.generation != self._generation:
                self._generation = self.stream.generation
                self.assembler.reset()
            if frame is None:
                return None
            item = self.assembler.feed(pgoutput.decode(frame.payload), lsn=frame.wal_start)
            if isinstance(item, Transaction):
                self._delivered_end = max(self._delivered_end, item.end_lsn)
            elif isinstance(item, Heartbeat):
                self.last_heartbeat = item
            if item is not None:
                return item

    def batch(self, *, max_transactions: int = 1000, max_events: int = 50_000,
              max_wait: float = 1.0) -> list[Transaction]:
        """Whole transactions: waits up to ``max_wait`` for the first, then takes what is ready.

        Never splits a transaction; a transaction still arriving stays in the
        assembler and comes whole in a later batch. Under load batches grow by
        themselves; when idle the first commit is returned at once (low lag).
        Heartbeats update ``last_heartbeat``.
        """
        out: list[Transaction] = []
        events = 0
        deadline = time.monotonic() + max_wait
        while len(out) < max_transactions and events < max_events:
            wait = max(deadline - time.monotonic(), 0.0) if not out else 0.0
            item = self.next(timeout=wait)
            if item is None:
                break
            if isinstance(item, Heartbeat):
                if out:
                    break
                continue
            out.append(item)
            events += len(item.events)
        return out

    def ack_heartbeat(self) -> int | None:
        """Acknowledge the last heartbeat's LSN if every transaction before it is acknowledged.

        Lets an idle publication release WAL (DESIGN: the source stays safe):
        a heartbeat is decoded after every commit that precedes it, so once all
        handed-out transactions are acknowledged nothing below it is pending.
        Returns the LSN acknowledged, or None.
        """
        hb = self.last_heartbeat
        if hb is None or self.assembler.open_transaction or self._delivered_end > self._acked or hb.lsn <= self._acked:
            return None
        self._acked = max(self._acked, hb.lsn)
        self.stream.ack(hb.lsn)
        return hb.lsn


def stream_slot(dsn: str, names: StreamInfo, start_lsn: int, sink: Sink, *, flag: engine.StopFlag, report: engine.R,
                heartbeat_interval: float = 1.0, until_caught_up: bool = False,
                retained_wal_warn_bytes: int = RETAINED_WAL_WARN_BYTES, max_wait: float = 0.2,
                metrics: Metrics | None = None, say: engine.Say = print,
                on_batch: Callable[[ApplyResult], None] | None = None,
                wrap: Callable[[CdcSource], Any] | None = None) -> engine.R:
    """The CDC half of every job that reads the slot: a :class:`CdcSource` from ``start_lsn`` run into ``sink``
    (``wrap`` puts periodic work of the job around the source: the sync's re-copies)."""
    cdc = CdcSource(ReplicationStream(dsn, slot=names.slot, publications=[names.publication], start_lsn=start_lsn),
                    heartbeat_interval=heartbeat_interval, until_caught_up=until_caught_up,
                    retained_wal_warn_bytes=retained_wal_warn_bytes)
    source = wrap(cdc) if wrap is not None else cdc
    try:
        return engine.run(source, sink, flag=flag, report=report, max_wait=max_wait, metrics=metrics, say=say,
                          on_batch=on_batch)
    finally:
        source.close()
