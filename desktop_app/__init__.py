"""desktop-app: image-similarity search over local photo folders."""

import time

# When our code first ran: start-up times in the log are measured from here
# (``ui.app.log_startup``; bench/bench_gui.py reads them).
STARTED = time.monotonic()

__version__ = "0.1.0"
APP_NAME = "desktop-app"
