"""The controller's slots for the window's newer features: result filters, hiding the
query's own file, clearing a region, query clean-up, sort direction, copy confirmations,
the failures list (retry, ignore) and the paths the duplicate review changed.

A mixin of ``SearchController`` (controller.py), kept apart so the flow's core stays
readable; it uses the controller's state and signals. GUI thread only, like the
controller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_app.engine.cleanup import DEFAULT_CLEANUP, Cleanup
from desktop_app.engine.filters import NO_FILTER, ResultFilter
from desktop_app.ui.search_runner import Query
from desktop_app.ui.worker import IndexJob

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance

    from desktop_app.engine.settings import Settings
    from desktop_app.engine.status import Failure, LibraryStatus
    from desktop_app.ui.results_model import ResultsModel
    from desktop_app.ui.worker import IndexWorker


class FeatureSlots:
    if TYPE_CHECKING:  # provided by SearchController
        current: Query | None
        top_k: int
        threshold: float
        model: ResultsModel
        worker: IndexWorker
        settings: Settings
        last_status: LibraryStatus | None
        message: SignalInstance
        query_image_region_cleared: SignalInstance

        def _start(self, q: Query, record: bool = True, reload_preview: bool = True) -> None: ...

        def rerun(self) -> None: ...

    def _init_features(self) -> None:
        self.result_filter: ResultFilter = NO_FILTER  # the filter bar's choice
        self.cleanup: Cleanup = DEFAULT_CLEANUP  # the side panel's clean-up toggles
        self.hide_query_file = False  # leave the query's own file out of its results
        self.ignored_failures: set[str] = set()  # hidden from the failures dialog

    def _filter_for(self, q: Query) -> ResultFilter:
        own = q.path if self.hide_query_file and q.kind in ("image", "similar") else None
        if own is None:
            return self.result_filter
        return replace(self.result_filter, exclude_paths=frozenset({own}))

    def set_filter(self, result_filter: ResultFilter) -> None:
        """The filter bar changed: the current query runs again with it."""
        if result_filter != self.result_filter:
            self.result_filter = result_filter
            self.rerun()

    def set_cleanup(self, cleanup: Cleanup) -> None:
        """The clean-up toggles changed: the current image query runs again, cleaned, and
        the query panel shows the cleaned image."""
        if cleanup == self.cleanup:
            return
        self.cleanup = cleanup
        q = self.current
        if q is not None and q.kind in ("image", "url"):
            self._start(replace(q, top_k=self.top_k, threshold=self.threshold), record=False)

    def set_hide_query_file(self, hide: bool) -> None:
        if hide != self.hide_query_file:
            self.hide_query_file = hide
            self.rerun()

    def clear_region(self) -> None:
        """Search by the whole query image again (Esc or the button on the query)."""
        q = self.current
        if q is None or q.region is None:
            return
        whole = replace(q, region=None)
        self._start(whole, reload_preview=False)
        self.query_image_region_cleared.emit()

    def set_sort_reversed(self, reverse: bool) -> None:
        self.model.set_reversed(reverse)

    def copy_path(self, path: str, deliver: Callable[[str], None]) -> None:
        deliver(path)
        self.message.emit(f"Copied the path of {Path(path).name}", 4000)

    def retry_failed(self, path: str) -> None:
        """Index one failed file again (it may have been fixed or finished copying)."""
        self.ignored_failures.discard(path)
        self.worker.submit(IndexJob([path], add=False))
        self.message.emit(f"Retrying {Path(path).name}…", 4000)

    def ignore_failed(self, path: str) -> None:
        self.ignored_failures.add(path)

    def failures(self) -> list[Failure]:
        """The last status's failures, less the ignored ones."""
        shown = self.last_status.failures if self.last_status is not None else []
        return [f for f in shown if f.path not in self.ignored_failures]

    def reindex_paths(self, paths: list[str]) -> None:
        """Bring the catalog and index up to date for paths changed outside the worker
        (files moved to the trash by the duplicate review)."""
        if paths:
            self.worker.submit(IndexJob(paths, add=False))

    def _said_empty(self, path: str) -> Callable[[bool], None]:
        def said(has_images: bool) -> None:
            if not has_images:
                self.message.emit(
                    f"{path} has no images yet ({', '.join(self.settings.file_types)}); "
                    "it is watched, and images added later are indexed.",
                    10000,
                )

        return said
