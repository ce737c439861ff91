"""Starting the desktop window: the QApplication, the library, the window and its event
loop, all on the main thread, which Qt makes the GUI thread.

One window per data dir: before the library is opened (and its lock taken), a launch
hands its request to a window already running on that data dir (``single_instance``)
and exits; otherwise it opens the library and listens for later launches.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_app.engine.errors import DataDirLocked, DesktopAppError
from desktop_app.engine.paths import AppDirs, resolve_dirs
from desktop_app.logs import setup_logging
from desktop_app.resources import icon_paths

if TYPE_CHECKING:
    from desktop_app.engine.library import Library
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.ui.single_instance import InstanceServer

log = logging.getLogger(__name__)

HANDED_OVER = "desktop-app is already running; your request was handed to it"
STARTING_WINDOW_WAIT_S = 10.0


def run_gui(
    data_dir: Path | str | None = None,
    *,
    image: Path | str | None = None,
    quit_after: float | None = None,
    screenshot: Path | None = None,
) -> int:
    """Open the window; search by `image` when given (a file manager's "Open with").
    When a window is already open on the data dir, hand it `image` and return 0.

    `quit_after` seconds later the window closes, saved to `screenshot` first when given
    (the packaged app's smoke test and the docs use this).
    """
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QMessageBox

    from desktop_app.engine.library import Library
    from desktop_app.ui.errors import install_excepthook

    dirs = resolve_dirs(data_dir)
    setup_logging(dirs.logs, stderr=False)
    existing = QApplication.instance()
    # a QCoreApplication cannot show windows: the GUI needs the QApplication it made or finds
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv)
    app.setApplicationName("desktop-app")
    app.setOrganizationName("desktop-app")
    if hand_to_running(dirs, image):
        print(HANDED_OVER, file=sys.stderr)
        return 0
    # package data, so a wheel install and the frozen app have it too
    icon = QIcon()
    for png in icon_paths():
        icon.addFile(str(png))
    if not icon.isNull():
        QApplication.setWindowIcon(icon)
    try:
        # Chroma (seconds to import) opens on the worker after the window has painted
        library = Library(dirs, defer_store=True)
    except DataDirLocked as exc:
        # a window launched a moment before may hold the lock and not listen yet
        if wait_for_running(dirs, image):
            print(HANDED_OVER, file=sys.stderr)
            return 0
        QMessageBox.critical(None, "desktop-app", str(exc))
        return 1
    except DesktopAppError as exc:
        QMessageBox.critical(None, "desktop-app", str(exc))
        return 1
    window, server = open_window(library, image)
    install_excepthook(lambda: window)  # the hooks keep the reporter alive
    if quit_after is not None or screenshot is not None:
        from desktop_app.ui.autoquit import quit_later

        quit_later(window, 5.0 if quit_after is None else quit_after, screenshot)
    try:
        return app.exec()
    finally:
        server.close()
        if window.shutdown():
            library.close()
        else:  # closing SQLite or Chroma under a running thread could corrupt them
            log.error("a background thread is still running: the library is left open")


def hand_to_running(dirs: AppDirs, image: Path | str | None = None) -> bool:
    """A second launch: True when a window on this data dir took the request."""
    from desktop_app.ui.single_instance import send_to_running, server_name

    request = {"image": str(Path(image).expanduser().resolve()) if image else None}
    return send_to_running(server_name(dirs.data), request)


def wait_for_running(
    dirs: AppDirs, image: Path | str | None, seconds: float = STARTING_WINDOW_WAIT_S
) -> bool:
    """The data dir is locked: hand the request over as soon as a window there listens;
    False after ``seconds`` (the lock's holder is not a window, e.g. a command-line run)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if hand_to_running(dirs, image):
            return True
        time.sleep(0.25)
    return False


def open_window(
    library: Library, image: Path | str | None = None
) -> tuple[MainWindow, InstanceServer]:
    """The window, shown, listening for later launches (and searching ``image``)."""
    from desktop_app.ui.main_window import MainWindow
    from desktop_app.ui.single_instance import InstanceServer, server_name

    window = MainWindow(library)
    server = InstanceServer(server_name(library.dirs.data), window)
    server.request_received.connect(lambda request: handle_request(window, request))
    if not server.listen():
        log.warning("a later launch will not find this window")
    window.show()
    log_startup(window)
    if image:
        window.search_file(image)
    return window, server


def log_startup(window: MainWindow) -> None:
    """Log when the window has painted and when the encoder is ready, in seconds since
    start-up and as wall-clock times (bench/bench_gui.py reads both): the window must
    paint before the encoder (and torch) loads. Runs on the GUI thread."""
    import time

    from PySide6.QtCore import QTimer

    import desktop_app

    def stamp(what: str) -> None:
        since = time.monotonic() - desktop_app.STARTED
        heavy = [m for m in ("torch", "onnxruntime", "chromadb") if m in sys.modules]
        log.info(
            "startup: %s %.3f s after launch, cpu %.3f s (at %.3f; loaded: %s)",
            what,
            since,
            time.process_time(),  # of all threads: on a busy machine wall time is noise
            time.time(),
            ", ".join(heavy) or "none of torch, onnxruntime, chromadb",
        )

    # a zero timer fires once the event loop has handled the show's paint events
    QTimer.singleShot(0, window, lambda: stamp("window painted"))
    ready = window.controller.encoder_ready

    def on_ready(*_: object) -> None:
        stamp("encoder ready")
        ready.disconnect(on_ready)

    ready.connect(on_ready)


def handle_request(window: MainWindow, request: dict[str, Any]) -> None:
    """Another launch's request: the window comes forward and searches its image."""
    window.showNormal()
    window.raise_()
    window.activateWindow()
    image = request.get("image")
    if isinstance(image, str) and image:
        window.search_file(image)
