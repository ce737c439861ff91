"""chromadb's HTTP client with timeouts from its very first request.

The stock ``FastAPI`` client builds its ``httpx`` session with no timeout, and the client's
constructor already makes requests on it (the user identity, the tenant and database
check): a server that accepts the connection and never answers would hang the caller for
good. chromadb accepts no other API class for HTTP (it checks the class name), so
:func:`install` wraps ``FastAPI.__init__`` once, process-wide, to give each new session a
short handshake timeout before any request; ``remote.RemoteVectorStore`` raises it to the
per-request timeout once connected. Only this app's remote store makes HTTP clients.

Imported only when a client connects (``remote.py``): chromadb is heavy to import. Any
thread may connect; ``install`` is idempotent and guarded by a lock.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

HANDSHAKE_TIMEOUT_S = 10.0  # each request of the connection's handshake
CONNECT_TIMEOUT_S = 5.0

_installed = False
_lock = threading.Lock()


def install() -> None:
    """Make every chromadb HTTP session start with timeouts (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        import httpx
        from chromadb.api.fastapi import FastAPI

        stock_init = FastAPI.__init__

        @functools.wraps(stock_init)
        def timed_init(self: Any, system: Any) -> None:
            stock_init(self, system)
            # read at each connection, so a test can shorten it
            self._session.timeout = httpx.Timeout(HANDSHAKE_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)

        FastAPI.__init__ = timed_init  # type: ignore[method-assign]
        _installed = True
