"""Back/forward history of queries (Alt+Left / Alt+Right). Plain Python, no Qt: the
controller owns one and uses it on the GUI thread only."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class QueryHistory(Generic[T]):
    def __init__(self, limit: int = 100) -> None:
        self._items: list[T] = []
        self._pos = -1
        self._limit = limit

    def push(self, item: T) -> None:
        del self._items[self._pos + 1 :]  # a new query drops the forward branch
        self._items.append(item)
        if len(self._items) > self._limit:
            self._items.pop(0)
        self._pos = len(self._items) - 1

    def back(self) -> T | None:
        if not self.can_back():
            return None
        self._pos -= 1
        return self._items[self._pos]

    def forward(self) -> T | None:
        if not self.can_forward():
            return None
        self._pos += 1
        return self._items[self._pos]

    def can_back(self) -> bool:
        return self._pos > 0

    def can_forward(self) -> bool:
        return self._pos < len(self._items) - 1

    def current(self) -> T | None:
        return self._items[self._pos] if self._pos >= 0 else None
