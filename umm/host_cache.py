"""A host-RAM LRU of unloaded models, bounded by bytes, so swapping back skips the disk."""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class HostCache(Generic[T]):
    def __init__(self, budget_bytes: int) -> None:
        self.budget = max(0, int(budget_bytes))
        self._items: collections.OrderedDict[str, tuple[T, int]] = collections.OrderedDict()

    @property
    def used(self) -> int:
        return sum(size for _, size in self._items.values())

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def fits(self, size: int) -> bool:
        return 0 < size <= self.budget

    def put(self, key: str, value: T, size: int) -> list[T]:
        """Insert as most recent; return what had to be evicted to stay within budget."""
        self._items.pop(key, None)
        self._items[key] = (value, size)
        evicted = []
        while self.used > self.budget:
            _, (old, _) = self._items.popitem(last=False)
            evicted.append(old)
        return evicted

    def pop(self, key: str) -> T | None:
        item = self._items.pop(key, None)
        return None if item is None else item[0]
