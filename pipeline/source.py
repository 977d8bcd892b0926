"""The logical-decoding source: replication stream -> decoder -> assembler -> Transactions."""

from __future__ import annotations

import time

from pg2edge.pipeline import pgoutput
from pg2edge.pipeline.assembler import Assembler, Heartbeat
from pg2edge.pipeline.events import Transaction
from pg2edge.pipeline.replication import ReplicationStream


class CdcSource:
    """Whole committed transactions from a pgoutput slot, in commit order.

    ``ack(end_lsn)`` only after the sink committed them (the slot then releases WAL).
    """

    def __init__(self, stream: ReplicationStream) -> None:
        self.stream = stream
        self.assembler = Assembler()
        self._generation = stream.generation
        self.last_heartbeat: Heartbeat | None = None
        self._delivered_end = 0  # end LSN of the last transaction handed out
        self._acked = stream.flushed_lsn

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

    def ack(self, lsn: int) -> None:
        """The sink durably committed everything up to ``lsn`` (a commit's end LSN)."""
        self._acked = max(self._acked, lsn)
        self.stream.ack(lsn)

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
        self.ack(hb.lsn)
        return hb.lsn

    def close(self) -> None:
        self.stream.close()
