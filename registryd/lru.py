"""The one bounded least-recently-used map behind every in-process cache.

Used by the image cache, the upload hash states, the access facts and the shared blob
descriptors. Bounded by a number of entries and, optionally, by a total weight (bytes of
what the entries hold). Not thread-safe: every user runs on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``max_entries`` entries (and at most ``max_weight`` of ``weight(value)``);
    the least recently used go first, each handed to ``on_evict``."""

    def __init__(
        self,
        max_entries: int,
        *,
        weight: Callable[[V], int] | None = None,
        max_weight: int | None = None,
        on_evict: Callable[[V], None] | None = None,
    ) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._weight = weight
        self._max_weight = max_weight
        self._on_evict = on_evict
        self.total_weight = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def snapshot(self) -> list[tuple[K, V]]:
        """The entries, least recently used first, as a list (safe to ``pop`` while looping)."""
        return list(self._entries.items())

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None if absent."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value without touching its recency; None if absent."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Store (or replace) the value as the most recently used, then evict down to the
        bounds. A replaced value is not handed to ``on_evict``: its owner replaced it."""
        self.pop(key)
        self._entries[key] = value
        if self._weight is not None:
            self.total_weight += self._weight(value)
        while len(self._entries) > self.max_entries or (
            self._max_weight is not None and self.total_weight > self._max_weight
        ):
            _, oldest = self._entries.popitem(last=False)
            self._forget_weight(oldest)
            if self._on_evict is not None:
                self._on_evict(oldest)

    def pop(self, key: K) -> V | None:
        """Remove and return the value (not handed to ``on_evict``); None if absent."""
        value = self._entries.pop(key, None)
        if value is not None:
            self._forget_weight(value)
        return value

    def clear(self) -> None:
        self._entries.clear()
        self.total_weight = 0

    def _forget_weight(self, value: V) -> None:
        if self._weight is not None:
            self.total_weight -= self._weight(value)
