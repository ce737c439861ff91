"""chromadb's HTTP client with timeouts from its very first request.

The stock ``FastAPI`` client builds its ``httpx`` session with no timeout, and the client's
constructor already makes requests on it (the user identity, the tenant and database
check): a server that accepts the connection and never answers would hang the caller for
good. chromadb accepts no other API class for HTTP (it checks the class name), so
:func:`install` wraps ``FastAPI.__init__`` once, process-wide, to give each new session a
short handshake timeout before any request; ``remote.RemoteVectorStore`` raises it to the
per-request timeout once connected. Only this app's remote store makes HTTP clients.

The wrapper relies on no more of chromadb than it must: it passes whatever arguments it
gets to the stock constructor (tested with 1.5.9's ``(self, system)``), and sets the
timeouts only when the private ``_session`` is an ``httpx.Client``; a chromadb laid out
otherwise still connects, without the handshake timeout, and says so once in the log.

Imported only when a client connects (``remote.py``): chromadb is heavy to import. Any
thread may connect; ``install`` is idempotent and guarded by a lock.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # each request of the connection's handshake
CONNECT_TIMEOUT_S = 5.0

_installed = False
_lock = threading.Lock()
_warned = threading.Event()  # the "no handshake timeout" warning is logged once per process


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
        def timed_init(self: Any, *args: Any, **kwargs: Any) -> None:
            stock_init(self, *args, **kwargs)
            session = getattr(self, "_session", None)
            if isinstance(session, httpx.Client):
                # read at each connection, so a test can shorten it
                session.timeout = httpx.Timeout(HANDSHAKE_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
            else:
                _warn_no_timeout(session)

        FastAPI.__init__ = timed_init  # type: ignore[method-assign]
        _installed = True


def _warn_no_timeout(session: object) -> None:
    """This chromadb keeps its HTTP session elsewhere: connect anyway, say so once."""
    if _warned.is_set():
        return
    _warned.set()  # two threads racing here may both log it: harmless
    log.warning(
        "this chromadb's HTTP client keeps no httpx session in _session (found %s): "
        "its handshake runs without this app's timeout",
        type(session).__name__,
    )
