"""Whether this process has a window: set by the command line around each command.

Without a window no thread must get the GIL or a core within a frame, so work can be
arranged for throughput: the store writes in large chunks (``store.VectorStore.upsert``)
and the indexer's loader threads yield the cores to the encoder (``indexer``). The
window never sets it. The command's own thread sets and restores it around the whole
command; other threads only read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_headless = False


@contextmanager
def headless() -> Iterator[None]:
    """Inside, this process counts as having no window."""
    global _headless
    before, _headless = _headless, True
    try:
        yield
    finally:
        _headless = before


def is_headless() -> bool:
    return _headless
