"""Everything Qt: the window, models, delegates, workers, dialogs."""

from desktop_app.ui import refcount_guard

# before any window: PySide6 6.12.0 on Python < 3.12 would otherwise abort the app after
# enough painting (see refcount_guard)
refcount_guard.install()
