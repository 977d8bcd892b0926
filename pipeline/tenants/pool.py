"""A bounded LRU of open tenant files: 10,000 tenants never hold 10,000 file handles."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TenantPool(Generic[T]):
    """Keeps at most ``max_open`` items (one per tenant) open; the least recently used is closed first.

    ``opener(tenant)`` opens one; ``closer(item)`` closes it. ``peak`` is the most ever open at once.
    """

    def __init__(self, *, max_open: int, opener: Callable[[str], T], closer: Callable[[T], None]) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1 (got {max_open})")
        self.max_open = max_open
        self._opener, self._closer = opener, closer
        self._open: OrderedDict[str, T] = OrderedDict()
        self.peak = 0
        self.opened = 0

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._open

    def get(self, tenant: str) -> T:
        item = self._open.get(tenant)
        if item is not None:
            self._open.move_to_end(tenant)
            return item
        while len(self._open) >= self.max_open:
            old, victim = self._open.popitem(last=False)
            log.debug("closing tenant file %s (LRU, %d open)", old, len(self._open))
            self._closer(victim)
        item = self._opener(tenant)
        self._open[tenant] = item
        self.opened += 1
        self.peak = max(self.peak, len(self._open))
        return item

    def take(self, tenant: str) -> T | None:
        """Remove ``tenant``'s open item from the pool without closing it (None if not open): it is
        in use elsewhere (a worker thread) until :meth:`put` returns it."""
        return self._open.pop(tenant, None)

    def put(self, tenant: str, item: T) -> None:
        """Return (or add) ``tenant``'s open item as the most recently used; closes the least recently
        used ones beyond ``max_open``."""
        old = self._open.pop(tenant, None)
        if old is not None and old is not item:
            self._closer(old)
        while len(self._open) >= self.max_open:
            victim_tenant, victim = self._open.popitem(last=False)
            log.debug("closing tenant file %s (LRU, %d open)", victim_tenant, len(self._open))
            self._closer(victim)
        self._open[tenant] = item
        self.peak = max(self.peak, len(self._open))

    def discard(self, tenant: str) -> None:
        item = self._open.pop(tenant, None)
        if item is not None:
            self._closer(item)

    def close(self) -> None:
        while self._open:
            _, item = self._open.popitem(last=False)
            self._closer(item)
