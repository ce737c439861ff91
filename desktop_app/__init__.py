"""desktop-app: image-similarity search over local photo folders."""

__version__ = "0.1.0"
APP_NAME = "desktop-app"
