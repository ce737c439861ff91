"""One window per data dir: a second launch hands its request to the running window.

The running window listens on a local socket (a Unix domain socket, a named pipe on
Windows) named after its data dir. A second ``desktop-app`` on the same data dir connects
first; when someone answers, it sends its request (the image to search, if any) as one
line of JSON and exits, and the running window comes forward and searches. So a second
launch never becomes a second writer and never waits on the data-dir lock.

Threads: the GUI thread owns the server and its sockets (Qt's local sockets deliver
their signals on the thread that made them); the sending side blocks briefly with
time-outs, before any window exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 500
WRITE_TIMEOUT_MS = 2000
MAX_MESSAGE = 64 * 1024


def server_name(data_dir: Path) -> str:
    """Short (Unix socket paths are limited to ~100 bytes), per user and data dir."""
    key = f"{os.getuid() if hasattr(os, 'getuid') else ''}:{Path(data_dir).resolve()}"
    return "desktop-app-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def send_to_running(name: str, request: dict[str, Any]) -> bool:
    """Hand ``request`` to the window listening on ``name``; False when none answers."""
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write((json.dumps(request) + "\n").encode())
    sent = socket.waitForBytesWritten(WRITE_TIMEOUT_MS)
    socket.disconnectFromServer()
    if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
        socket.waitForDisconnected(WRITE_TIMEOUT_MS)
    return sent


class InstanceServer(QObject):
    """Listens for later launches; ``request_received(dict)`` carries each request."""

    request_received = Signal(dict)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._accept)
        self._buffers: dict[QLocalSocket, bytes] = {}

    def listen(self) -> bool:
        # A socket file left by a crashed window would refuse the name: we hold the
        # data-dir lock, so no live window can own it.
        QLocalServer.removeServer(self.name)
        if not self._server.listen(self.name):
            log.warning("cannot listen on %s: %s", self.name, self._server.errorString())
            return False
        return True

    def close(self) -> None:
        for socket in list(self._buffers):
            socket.abort()
        self._buffers.clear()
        self._server.close()

    def _accept(self) -> None:
        while self._server.hasPendingConnections():
            # None when the client left already; the stubs leave out the Optional
            socket: QLocalSocket | None = self._server.nextPendingConnection()
            if socket is None:
                return
            self._buffers[socket] = b""
            # bound methods, not lambdas holding the socket: each slot looks at every
            # open connection, so no closure keeps a socket's wrapper alive
            socket.readyRead.connect(self._read_all)
            socket.disconnected.connect(self._read_all)

    def _read_all(self) -> None:
        for socket in list(self._buffers):
            data = self._buffers[socket] + bytes(socket.readAll().data())
            done = b"\n" in data
            closed = socket.state() == QLocalSocket.LocalSocketState.UnconnectedState
            if len(data) > MAX_MESSAGE:
                log.warning("dropping an oversized request from another launch")
                data, done = b"", True
            if not (done or closed):
                self._buffers[socket] = data
                continue
            del self._buffers[socket]
            socket.readyRead.disconnect(self._read_all)
            socket.disconnected.disconnect(self._read_all)
            socket.abort()
            socket.deleteLater()
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        line = data.split(b"\n", 1)[0].strip()
        if not line:
            return
        try:
            request = json.loads(line)
        except ValueError:
            log.warning("ignoring a malformed request from another launch")
            return
        if isinstance(request, dict):
            self.request_received.emit(request)
