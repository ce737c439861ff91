"""The library: one data dir's catalog, vector index and encoder, behind one facade
used by the command line, the desktop window and the tests.

Ownership (who may call what, from which thread):

- **One writer.** The thread that calls :meth:`Library.index`, :meth:`forget`,
  :meth:`sync_store` or :meth:`heal_store` is the only writer of the catalog and the
  vector store; in the window that is the indexing worker (``ui/worker.py``), in the
  CLI the main thread. It also replaces :attr:`slot` when a re-index for another
  encoder completes. Opening the library writes too (a damaged store is set aside and
  rebuilt), before any other thread can use it; a deferred store (the window's, so it
  paints before Chroma loads) is opened and checked the same way by the first thread
  that asks, under a lock the others wait on: the worker, when it loads the encoder.
- **Searches only read.** ``image_stages``/``similar_stages``/``search_*`` may run on
  any thread at the same time as the writer. They never write: they do not sync the
  store (the writer does that when the encoder loads and after each run), and a store
  that lags the catalog answers with what it has until then.
- **One encoder per search.** A search reads :attr:`slot` once, at its start, and
  embeds and compares with that slot's encoder and id only: the writer's swap to a new
  encoder is one reference assignment, so a search sees the old pair or the new one,
  never a mix (a query embedded by one model and compared in the other's collection).
- **Settings.** The writer gets its own copy of the settings per job (``settings=`` of
  :meth:`index`); an :class:`EncoderSlot` copies what it needs when it is made. The
  object in :attr:`settings` belongs to the thread that owns the library (the GUI
  thread in the window), which replaces it rather than changing it in place.

The catalog lends pooled connections per call (any thread); Chroma reads are thread-safe.
Searches read the store through :attr:`reads` (a ``StoreReader``): each call goes to the
*published* store (one that is complete) and holds it while it runs, and a read never
creates a collection. A store that fails is set aside and rebuilt from the catalog on
the writer's side only (on open, and at the start of an index run): the old store is
retired, closes once the searches' calls on it are done (never under them; the writer
waits for that, bounded), and only then is its folder renamed and the new one built,
refilled and published; searches that come meanwhile wait for it on a condition. A
search that meets a failing store raises :class:`StoreDamaged` and marks it for that
repair.
In server mode the writer's uploads stop between rounds when its run is cancelled.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from desktop_app.engine.analysis import (
    REGION_FEATURES,
    Analyser,
    RegionAnalyser,
    RegionScheme,
)
from desktop_app.engine.catalog import Catalog, VectorRow
from desktop_app.engine.cleanup import NO_CLEANUP, Cleanup
from desktop_app.engine.duplicate_review import TrashReport, trash_files
from desktop_app.engine.duplicates import DuplicateGroup, DuplicateProgress, find_duplicates
from desktop_app.engine.encoders import DownloadProgress, Encoder, load_with_fallback
from desktop_app.engine.errors import (
    ChromaNotLoaded,
    DesktopAppError,
    NotFound,
    NotIndexed,
    StoreDamaged,
)
from desktop_app.engine.filters import NO_FILTER, ResultFilter
from desktop_app.engine.indexer import (
    Indexer,
    IndexSummary,
    IndexTarget,
    Progress,
    collect_garbage,
)
from desktop_app.engine.lock import DataDirLock
from desktop_app.engine.partial import PartialSearch, QueryFeatures
from desktop_app.engine.paths import AppDirs, resolve_dirs
from desktop_app.engine.queries import ImageSource, image_query, stored_query
from desktop_app.engine.remote import TOKEN_ENV, RemoteVectorStore, StoreUnavailable
from desktop_app.engine.scanner import is_within
from desktop_app.engine.search import Box, SearchResult
from desktop_app.engine.settings import FIXED_ID_MODELS, Settings, model_chosen
from desktop_app.engine.shared import (
    SharedView,
    Uploader,
    machine_name,
    stop_tracking,
    track_changes,
    unsynced_count,
)
from desktop_app.engine.status import Failure, LibraryStatus, RootStatus
from desktop_app.engine.store import (
    StoreReader,
    VectorStore,
    forget_system,
    hnsw_elements,
    hnsw_files_problem,
)
from desktop_app.engine.vector_ids import vector_id, vector_metadata

log = logging.getLogger(__name__)

Stage = Callable[[], list[SearchResult]]
PROBE_K = 200  # neighbours asked of each collection when the store is checked
# how long the writer waits for searches to finish with a store it replaces: a search's
# call on the store takes well under a second; this bounds one that hangs
STORE_WAIT_S = 30.0
# The store is compacted (rebuilt from the catalog) once its HNSW indexes hold more
# deleted elements than this many and more than COMPACT_RATIO × the live vectors: Chroma
# never reuses a deleted element's slot, so a library whose photos come and go (edits,
# moves between watched and unwatched folders, imports and clean-ups) grew its index in
# memory and on disk without end (the soak: +140 MB in 20 min). The ratio keeps the
# rebuild's cost proportional to the writes that made the waste.
COMPACT_MIN_DEAD = 2000
COMPACT_RATIO = 1.0
COPY_PAGE = 2000  # vectors read from the catalog and written to the copy at a time
COMPACTING = "chroma.compacting"  # the copy being filled, beside the store's folder
BEFORE_COMPACTION = "chroma.before-compaction"  # the old folder, until the copy is published


def upsert_rows(store: VectorStore, enc: str, kind: str, rows: Sequence[VectorRow]) -> None:
    """Write catalog vector rows to ``store`` (a refill from the catalog: nothing
    re-embedded), with the ids and metadata the indexer gives them."""
    store.upsert(
        enc,
        [vector_id(r.fingerprint, r.kind, r.idx) for r in rows],
        np.stack([r.vector for r in rows]),
        [vector_metadata(r.fingerprint, r.box) for r in rows],
        kind=kind,
    )


class CompactionCancelled(Exception):
    """A compaction stopped between pages (the index run's cancel)."""


class EncoderSlot:
    """The library's encoder for one model name: its id is known cheaply where possible,
    the weights load on first use, once, whichever thread asks first."""

    def __init__(
        self,
        spec: str,
        settings: Settings,
        progress: DownloadProgress | None = None,
        allow_download: bool = True,
    ):
        self.spec = spec
        # copied now: the settings object may change on another thread before the load
        self._device, self._batch_size = settings.device, settings.batch_size
        self._progress = progress
        self.allow_download = allow_download
        self._encoder: Encoder | None = None
        self.warning: str | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        if self.spec in FIXED_ID_MODELS and self._encoder is None:
            return self.spec  # no need to import torch to know it
        return self.get().id

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def get(self, progress: DownloadProgress | None = None) -> Encoder:
        """The encoder, loaded now if it is not yet. ``progress`` replaces the slot's own
        callback for a download this call makes (the window's worker passes one that
        stops at the next chunk when its job is cancelled or the app quits)."""
        with self._lock:
            if self._encoder is None:
                got = load_with_fallback(
                    self.spec,
                    self._device,
                    self._batch_size,
                    progress or self._progress,
                    self.allow_download,
                )
                self._encoder, self.warning = got.encoder, got.warning
            return self._encoder


class Library:
    def __init__(
        self,
        dirs: AppDirs,
        settings: Settings | None = None,
        *,
        model: str | None = None,
        store: VectorStore | None = None,
        progress: DownloadProgress | None = None,
        store_url: str | None = None,
        store_token: str | None = None,
        defer_store: bool = False,
    ) -> None:
        """``store_url`` (else the ``store_url`` setting) puts the vectors on a Chroma
        server; ``store_token`` (else $DESKTOP_APP_STORE_TOKEN) authenticates there.
        ``defer_store`` leaves the embedded store closed until first used (see
        :attr:`store`): the window paints before Chroma is even imported."""
        self.dirs = dirs.ensure()
        self.settings = settings or Settings.load(dirs.settings_path)
        self._lock = DataDirLock(dirs.data)
        self._lock.acquire()
        url = self.settings.store_url if store_url is None else store_url
        catalog: Catalog | None = None
        try:
            self.catalog = catalog = Catalog(dirs.catalog_path)
            spec = model or self.catalog.get_meta("active_model") or self.settings.model
            # a download only when the user named the model: never for the default
            chosen = model is not None or model_chosen(dirs.settings_path)
            self.slot = EncoderSlot(spec, self.settings, progress, allow_download=chosen)
            self._region_data: set[str] = set()
            # "ok", or what was found wrong and done about it (``status`` reports it)
            self.store_health = "ok"
            self._store_suspect = False
            self.remote: RemoteVectorStore | None = None
            self.uploader: Uploader | None = None
            if store is None and url:
                token = store_token or os.environ.get(TOKEN_ENV)
                store = RemoteVectorStore(url, token)
            # a server is not ours to check and rebuild (nor is a store handed in)
            self._own_store = store is None
            # the writer's store (it refills a rebuilt one here) ...
            self._store: VectorStore | None = store
            self._store_lock = threading.Lock()
            # ... and what searches read: the store published once complete, held while a
            # call runs, so a rebuild never closes a store under a search nor shows a
            # half-refilled one (a deferred store is opened by the first to ask)
            self.reads = StoreReader(lambda: self.store)
            if store is not None:
                self.reads.publish(store)
            elif not defer_store:
                self._store = self._open_store()
                self.reads.publish(self._store)
            self.machine = machine_name(self.settings.machine_name)
            # what searches read: the catalog, or the catalog and the server
            self.reader: Catalog | SharedView = self.catalog
            if isinstance(self._store, RemoteVectorStore):  # never deferred
                self.remote = self._store
                track_changes(self.catalog, self.remote.url)
                self.uploader = Uploader(self.catalog, self.remote, self.machine)
                self.reader = SharedView(self.catalog, self.remote, self.machine)
            else:
                stop_tracking(self.catalog)
        except BaseException:
            if catalog is not None:
                catalog.close()
            self._lock.release()
            raise

    # -- the vector store's health (writer side) -----------------------------------------
    @property
    def store(self) -> VectorStore:
        """The vector store. A deferred one (``defer_store``) is opened, checked and if
        need be rebuilt by the first thread that asks, under a lock that makes every
        other thread wait for it: in the window that is the worker, the writer, when it
        loads the encoder (``catch_up_store``), so a search finds it open."""
        store = self._store
        if store is not None:
            return store
        with self._store_lock:
            if self._store is None:
                started = time.monotonic()
                opened = self._open_store()
                self._store = opened
                self.reads.publish(opened)
                log.info("vector index opened in %.2f s", time.monotonic() - started)
            return self._store

    @store.setter
    def store(self, store: VectorStore) -> None:
        self._store = store

    def _open_store(self) -> VectorStore:
        """Open the store; one that fails to open or answers wrongly is set aside and
        rebuilt from the catalog, with nothing re-embedded."""
        path = self.dirs.chroma_path
        self._finish_compaction(path)
        if not path.exists() and self.catalog.vector_counts():
            return self._rebuild_store("its folder is missing")
        problem = hnsw_files_problem(path)  # before Chroma loads what could crash it
        if problem is not None:
            return self._rebuild_store(problem)
        store: VectorStore | None = None
        try:
            store = VectorStore.persistent(path)
        except ChromaNotLoaded:  # Chroma's code, not the files: never set them aside
            raise
        except Exception as exc:  # Chroma raises many kinds on damaged files
            problem = f"it cannot be opened ({type(exc).__name__}: {exc})"
        if store is not None:
            try:
                problem = self._store_problem(store)
            except BaseException:  # e.g. ChromaNotLoaded: not damage, but never left open
                store.close()
                raise
            if problem is None:
                return store
            store.close()
        assert problem is not None
        return self._rebuild_store(problem)

    @staticmethod
    def _finish_compaction(path: Path) -> None:
        """A compaction that stopped before its copy was published: with the store's
        folder gone (moved aside), the copy is complete (it is moved in only once
        filled) and takes its place; with the folder there, the leftovers go."""
        beside, old = path.with_name(COMPACTING), path.with_name(BEFORE_COMPACTION)
        if not path.exists() and beside.is_dir():
            os.replace(beside, path)
            log.warning("a compaction was cut short: its complete copy is the vector index now")
        if path.exists():
            for leftover in (beside, old):
                shutil.rmtree(leftover, ignore_errors=True)

    def _store_problem(self, store: VectorStore) -> str | None:
        """What is wrong with the store for the active encoder, or None: each of its
        collections must count and answer a query for one of its own vectors."""
        if store.closed:  # retired for a rebuild that then failed
            return "it was set aside for a rebuild that did not complete"
        encoder_id = self._active_encoder_id()
        for enc, kind in self.catalog.vector_counts():
            if encoder_id is not None and enc != encoder_id:
                continue
            try:
                count = store.count(enc, kind)
                probe = next(iter(self.catalog.vectors(enc, kind)), None)
                if probe is not None and count > 0:
                    # as deep as searches go: a damaged graph can answer k=1 and fail k=100
                    store.query(enc, probe.vector[None, :], min(count, PROBE_K), kind=kind)
            except StoreDamaged as exc:
                return str(exc)
        return None

    def _active_encoder_id(self) -> str | None:
        """The active encoder's id without loading it, when it can be known; None
        means "any of them"."""
        if self.slot.loaded or self.slot.spec in FIXED_ID_MODELS:
            return self.slot.id
        return self.slot.spec if self.slot.spec in self.catalog.encoders() else None

    def _rebuild_store(self, problem: str) -> VectorStore:
        """Rename the damaged store to ``chroma.damaged-<time>`` (never deleted: it may
        hold what someone wants to look at) and rebuild the active encoder's vectors from
        the catalog; other encoders' follow when next used (``sync_store``)."""
        path = self.dirs.chroma_path
        aside: Path | None = None
        if path.exists():
            aside = path.with_name(f"chroma.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            n = 1
            while aside.exists():
                n += 1
                aside = path.with_name(f"chroma.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            os.replace(path, aside)
        where = f"; the damaged files are kept in {aside}" if aside else ""
        log.warning(
            "the vector index was damaged (%s)%s; rebuilding it from the catalog", problem, where
        )
        try:
            store = VectorStore.persistent(path)
        except ChromaNotLoaded:  # not the disk: its own message says what to do
            raise
        except Exception as exc:
            raise StoreDamaged(
                f"the vector index at {path} was damaged ({problem}) and a new one cannot be "
                f"created ({type(exc).__name__}: {exc}). Check the disk and its free space."
            ) from exc
        self.store = store  # the writer's, to refill; searches wait for publish below
        self._store_suspect = False
        active = self._active_encoder_id()
        added = 0
        for enc in [active] if active is not None else self.catalog.encoders():
            added += self.sync_store(enc)
        self.reads.publish(store)  # complete: searches read it from now on
        self.store_health = (
            f"rebuilt from the catalog ({added} vectors, 0 images re-embedded) after it was "
            f"found damaged: {problem}{where}"
        )
        log.warning("vector index rebuilt: %d vectors re-added, 0 images re-embedded", added)
        return store

    def heal_store(self) -> bool:
        """Writer side: check a store a search found failing and rebuild it if it is
        damaged. Returns whether it was rebuilt."""
        if not self._own_store:
            return False
        problem = self._store_problem(self.store)
        if problem is None:
            self._store_suspect = False
            return False
        self._replace_store(problem)
        return True

    def _replace_store(self, problem: str) -> None:
        """Writer side: rebuild a damaged store while searches may be reading it. The
        old store is retired first (no search takes it any more) and closes once the
        searches' calls on it are done, never under them (bounded by STORE_WAIT_S);
        only then is its folder set aside (Windows cannot rename open SQLite files) and
        the new one built and refilled. Searches that come meanwhile wait for it to be
        published (``StoreReader``); if the rebuild fails they are told at once."""
        self._retire_published("damaged")
        try:
            self._rebuild_store(problem)
        except BaseException as exc:
            self._store_suspect = True  # the next index run or start tries again
            self.reads.publish_failure(
                f"the vector index was damaged and could not be rebuilt yet ({exc})"
            )
            raise

    @classmethod
    def open(cls, data_dir: Path | str | None = None, **kwargs: Any) -> Library:
        return cls(resolve_dirs(data_dir), **kwargs)

    def close(self) -> None:
        if self._store is not None:  # a deferred store never used was never opened
            self._store.close()
        published = self.reads.published  # another only if a rebuild failed half-way
        if published is not None and published is not self._store:
            published.close()
        self.catalog.close()
        self._lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the encoder ------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        return self.slot.get()

    @property
    def encoder_id(self) -> str:
        return self.slot.id

    def make_analyser(
        self,
        encoder: Encoder | None = None,
        regions: bool = False,
        settings: Settings | None = None,
    ) -> Analyser:
        encoder = encoder or self.encoder
        thumbnails = self.dirs.thumbnails
        if not regions:
            return Analyser(encoder, thumbnails)
        s = settings or self.settings
        scheme = RegionScheme(s.region_scale, s.region_grid, s.region_keypoints)
        return RegionAnalyser(encoder, scheme, thumbnails)

    # -- indexing ---------------------------------------------------------------------
    def roots(self) -> list[str]:
        return self.catalog.roots()

    def add_folder(self, path: Path | str) -> IndexTarget:
        """Add a folder (or file) to the library; a folder inside one the library already
        has is indexed as part of it, and folders inside the new one fold into it."""
        folder = Path(path).expanduser().resolve()
        roots = self.catalog.roots()
        for root in roots:
            if is_within(str(folder), root):
                return IndexTarget(folder, root)  # a library folder, perhaps offline
        check_indexable(folder)
        inner = [root for root in roots if is_within(root, str(folder))]
        if inner:
            self.catalog.remove_roots(inner)
        self.catalog.add_root(str(folder))
        return IndexTarget(folder, str(folder))

    def targets_for(self, paths: Sequence[Path | str]) -> list[IndexTarget]:
        """Targets for changed paths inside library folders (from the folder watcher);
        paths outside every library folder are ignored."""
        roots = self.catalog.roots()
        out = []
        for p in paths:
            path = Path(p).expanduser().absolute()
            root = next((r for r in roots if is_within(str(path), r)), None)
            if root is not None:
                out.append(IndexTarget(path, root))
        return out

    def index(
        self,
        paths: Sequence[Path | str] = (),
        cancel: threading.Event | None = None,
        *,
        add: bool = True,
        slot: EncoderSlot | None = None,
        settings: Settings | None = None,
    ) -> Iterator[Progress]:
        """Bring ``paths`` up to date (none: every library folder). With ``add`` they
        become library folders; without, only paths inside library folders count.

        With ``slot`` the library is indexed for another encoder while the current one
        keeps serving searches; it takes over when the run completes. ``settings`` is
        the run's own copy (the window's worker passes a snapshot per job); without it
        the library's settings are read as the run goes.
        """
        run_settings = settings or self.settings
        if paths:
            targets = [self.add_folder(p) for p in paths] if add else self.targets_for(paths)
        else:
            targets = [IndexTarget(Path(r), r) for r in self.catalog.roots()]
        slot = slot or self.slot
        encoder_id = slot.id
        self.catch_up_store(encoder_id, cancel)

        regions = run_settings.regions_enabled

        def analyser() -> Analyser:
            return self.make_analyser(slot.get(), regions, run_settings)

        indexer = Indexer(
            self.catalog,
            self.store,
            analyser,
            encoder_id,
            extensions=run_settings.file_types,
            max_megapixels=run_settings.max_megapixels,
            skip_dirs=[self.dirs.data, self.dirs.cache],
            cancel=cancel,
            required_features=REGION_FEATURES if regions else (),
            publish=self._upload_step if self.uploader else None,
        )
        completed = False
        for progress in indexer.run(targets):
            s = progress.summary
            if s is not None:
                self._finish_upload(s, cancel)
            if s is not None and not s.cancelled:
                completed = True
                self.catalog.set_meta("active_model", slot.spec)
                self.slot = slot  # one assignment: searches see the old pair or the new
                if s.embedded or s.reused or s.removed:
                    self.catalog.backup()  # rotating, at most hourly
            if self.uploader is not None and self.uploader.error:
                progress = replace(progress, store_error=self.uploader.error)
            yield progress
        if completed:  # after the run, not before: a start or a search never waits for it
            self.compact_store(cancel=cancel)

    def catch_up_store(self, encoder_id: str, cancel: threading.Event | None = None) -> None:
        """Writer side: repair a store a search found failing, then make it match the
        catalog for ``encoder_id`` (rebuilding it if that fails). The window's worker
        calls it when the encoder loads; every index run starts with it. ``cancel``
        stops a server upload between rounds (server mode)."""
        if self._store_suspect:
            self.heal_store()
        try:
            self.sync_store(encoder_id, cancel)
        except StoreDamaged as exc:
            if not self._own_store:
                raise
            self._replace_store(str(exc))
        if self.reads.published is not self.store:  # a rebuild that failed half-way
            self.reads.publish(self.store)  # ... is complete now: searches may read it

    def compact_store(self, force: bool = False, cancel: threading.Event | None = None) -> bool:
        """Writer side, at the end of an index run: rebuild the store from the catalog
        when its indexes hold more deleted elements than ``COMPACT_MIN_DEAD`` and
        ``COMPACT_RATIO`` × the live vectors (``force``: whenever any). The copy is
        filled page by page beside the published store, which keeps answering searches
        (``cancel`` stops it between pages, and a failure only leaves the store as it
        was); then the old one is retired (it closes once the searches under way are
        done, bounded), the copy takes its folder and is published, and only then is the
        old folder deleted. Nothing is re-embedded. Returns whether it compacted."""
        if not self._own_store or self._store is None:
            return False
        path = self.dirs.chroma_path
        live = self.store.live_vectors()
        dead = hnsw_elements(path) - live
        if dead <= (0 if force else max(COMPACT_MIN_DEAD, COMPACT_RATIO * live)):
            return False
        started = time.monotonic()
        beside = path.with_name(COMPACTING)
        try:
            self._fill_copy(beside, cancel)
        except Exception as exc:  # a full disk, most likely: the store stays as it was
            forget_system(beside)
            shutil.rmtree(beside, ignore_errors=True)
            if not isinstance(exc, CompactionCancelled):
                log.warning("the vector index could not be compacted (%s); kept as it was", exc)
            return False
        self._retire_published("compacting")
        old = path.with_name(BEFORE_COMPACTION)
        swapped = False
        try:
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(beside, path)
                swapped = True
            except OSError:
                os.replace(old, path)  # put it back
                raise
        except OSError as exc:  # e.g. Windows, while a detached search holds the files
            log.warning("the vector index could not be compacted (%s); kept as it was", exc)
            shutil.rmtree(beside, ignore_errors=True)
        try:
            store = VectorStore.persistent(path)
        except BaseException as exc:
            self._store_suspect = True  # the next index run or start rebuilds it
            self.reads.publish_failure(f"the vector index could not be reopened ({exc})")
            raise
        self.store = store
        self.reads.publish(store)
        if not swapped:
            return False
        shutil.rmtree(old, ignore_errors=True)  # after publishing: searches do not wait
        log.info(
            "vector index compacted in %.1f s: %d deleted entries dropped, %d kept",
            time.monotonic() - started,
            dead,
            live,
        )
        return True

    def _fill_copy(self, beside: Path, cancel: threading.Event | None) -> None:
        """A new store at ``beside`` with the collections the published one has, filled
        from the catalog ``COPY_PAGE`` vectors at a time, then closed (and out of Chroma's
        cache: it is reopened at the store's own path). Raises ``CompactionCancelled``."""
        shutil.rmtree(beside, ignore_errors=True)  # a compaction cut short earlier
        new = VectorStore.persistent(beside)
        try:
            for enc, kind in self.catalog.vector_counts():
                if not self.store.count(enc, kind):  # another encoder's, dropped earlier
                    continue
                page: list[VectorRow] = []
                for row in self.catalog.vectors(enc, kind):
                    page.append(row)
                    if len(page) >= COPY_PAGE:
                        self._copy_page(new, enc, kind, page, cancel)
                        page = []
                self._copy_page(new, enc, kind, page, cancel)
        finally:
            new.close()
            forget_system(beside)

    @staticmethod
    def _copy_page(
        new: VectorStore,
        enc: str,
        kind: str,
        rows: Sequence[VectorRow],
        cancel: threading.Event | None,
    ) -> None:
        if cancel is not None and cancel.is_set():
            raise CompactionCancelled("compaction cancelled")
        if rows:
            upsert_rows(new, enc, kind, rows)

    def _retire_published(self, why: str) -> None:
        """Writer side: no search takes the store any more; wait (bounded) for the
        searches under way to finish with it, then it is closed."""
        old = self.store
        old.retire()
        if not old.wait_closed(STORE_WAIT_S):
            # a search still holds it: rebuild beside it if its Chroma system can be
            # taken out of Chroma's cache (it then closes when that search ends), else
            # a new store at the path would get that very system back: close it now
            held = f"a search still holds the vector index ({why})"
            if old.detach():
                log.warning("%s; it closes when that search ends", held)
            else:
                log.warning("%s; closing it under that search", held)
                old.close()

    def _upload_step(self, analyses: object) -> None:
        """After each indexing batch: upload what the catalog marked (server mode)."""
        assert self.uploader is not None
        self.uploader.step()

    def _finish_upload(self, summary: IndexSummary, cancel: threading.Event | None) -> None:
        """End of a run: everything up, or what waits and why (the catalog keeps it).
        A cancelled run stops uploading between rounds; its marks wait for the next."""
        if self.uploader is None:
            return
        self.uploader.drain(cancel)
        summary.unsynced = unsynced_count(self.catalog)
        summary.store_error = self.uploader.error

    def upload(self) -> int:
        """Upload everything still marked (server mode); raises StoreUnavailable. Returns
        how many marks were waiting."""
        if self.uploader is None:
            return 0
        waiting = unsynced_count(self.catalog)
        self.uploader.upload()
        return waiting

    def sync_store(
        self, encoder_id: str | None = None, cancel: threading.Event | None = None
    ) -> int:
        """Make the vector index match the catalog (after a crash between the two writes,
        or when the index folder was deleted); returns how many vectors were re-added.
        Nothing is re-embedded: the catalog holds every vector. It writes: the writer
        calls it (the window's worker when the encoder loads, the CLI before a search)."""
        encoder_id = encoder_id or self.encoder_id
        if self.uploader is not None:
            # a server holds other machines' vectors too: never reconcile by deleting;
            # upload what the catalog marked instead (paused if it does not answer)
            self.uploader.step(max_rounds=None, cancel=cancel)
            return 0
        added = 0
        for (enc, kind), n in self.catalog.vector_counts().items():
            if enc != encoder_id or self.store.count(enc, kind) == n:
                continue
            in_store = self.store.ids(enc, kind)
            rows = [r for r in self.catalog.vectors(enc, kind)]
            wanted = {vector_id(r.fingerprint, r.kind, r.idx): r for r in rows}
            missing = [k for k in wanted if k not in in_store]
            extra = [k for k in in_store if k not in wanted]
            if extra:
                self.store.delete(enc, extra, kind=kind)
            if missing:
                log.info(
                    "re-adding %d %s vectors to the index from the catalog", len(missing), kind
                )
                upsert_rows(self.store, enc, kind, [wanted[k] for k in missing])
            added += len(missing)
        return added

    def forget(self, path: Path | str) -> int:
        """Remove a folder from the library and its files from the index."""
        folder = str(Path(path).expanduser().resolve())
        roots = self.catalog.roots()
        if folder not in roots and not any(is_within(folder, r) for r in roots):
            raise NotIndexed(f"{folder} is not a library folder")
        others = [r for r in roots if r != folder and not is_within(r, folder)]
        # folders inside the forgotten one go too
        self.catalog.remove_roots([r for r in roots if is_within(r, folder)])
        doomed = [
            p for p in self.catalog.files_in(folder) if not any(is_within(p, r) for r in others)
        ]
        removed = self.catalog.delete_files(doomed) if doomed else 0
        collect_garbage(self.catalog, self.store)
        if self.uploader is not None:
            self.uploader.drain()  # server down: the catalog keeps it marked for later
        return removed

    # -- searching --------------------------------------------------------------------
    def _search_slot(self) -> tuple[EncoderSlot, str]:
        """The (slot, encoder id) pair a search uses from start to end, read once.
        Nothing is written here: a search may run on any thread (see the module doc)."""
        slot = self.slot
        return slot, slot.id

    def _limits(self, top_k: int | None, threshold: float | None) -> tuple[int, float]:
        return (
            top_k if top_k is not None else self.settings.top_k,
            threshold if threshold is not None else self.settings.threshold,
        )

    def image_stages(
        self,
        source: ImageSource,
        top_k: int | None = None,
        threshold: float | None = None,
        region: Box | None = None,
        result_filter: ResultFilter = NO_FILTER,
        cleanup: Cleanup = NO_CLEANUP,
        cancel: threading.Event | None = None,
    ) -> list[Stage]:
        """Search by an image (path, encoded bytes or Pillow image), or a region of it, in
        two stages: full-image matches (fast), then with partial matches merged in.
        ``cleanup`` removes text overlays and/or enhances the query first (cleanup.py).
        Once ``cancel`` is set, the partial stage stops between candidates and raises
        :class:`SearchCancelled` (a newer query superseded it)."""
        k, t = self._limits(top_k, threshold)
        slot, encoder_id = self._search_slot()
        search = PartialSearch(
            self.reader, self.reads, encoder_id, result_filter=result_filter, cancel=cancel
        )
        state: dict[str, QueryFeatures] = {}
        max_megapixels = self.settings.max_megapixels

        def full() -> list[SearchResult]:
            q = image_query(slot.get(), source, region, max_megapixels, cleanup)
            state["q"] = q
            return search.full(q, k, t)

        return self._stages(encoder_id, full, lambda: search.merged(state["q"], k, t))

    def similar_stages(
        self,
        path: Path | str,
        top_k: int | None = None,
        threshold: float | None = None,
        result_filter: ResultFilter = NO_FILTER,
        cancel: threading.Event | None = None,
    ) -> list[Stage]:
        """ "Find similar" for an indexed file, from its stored vectors and keypoints;
        ``cancel`` as for :meth:`image_stages`."""
        k, t = self._limits(top_k, threshold)
        _slot, encoder_id = self._search_slot()
        q = stored_query(self.reader, encoder_id, path)
        search = PartialSearch(
            self.reader, self.reads, encoder_id, result_filter=result_filter, cancel=cancel
        )
        return self._stages(
            encoder_id, lambda: search.full(q, k, t), lambda: search.merged(q, k, t)
        )

    def _stages(self, encoder_id: str, full: Stage, merged: Stage) -> list[Stage]:
        """Both stages, or the full one alone for a library indexed with --no-regions:
        there is nothing to match regions against."""
        stages = [full, merged] if self.has_region_data(encoder_id) else [full]
        return [self._watch_store(stage) for stage in stages]

    def _watch_store(self, stage: Stage) -> Stage:
        """A store failure during a search marks the store for repair by the writer
        (the next index run, or the next start) and reaches the caller as StoreDamaged."""

        def run() -> list[SearchResult]:
            try:
                return stage()
            except StoreDamaged:
                self._store_suspect = True
                raise

        return run

    def has_region_data(self, encoder_id: str) -> bool:
        if self.catalog.has_vectors(encoder_id, "region"):
            return True
        if self.remote is None:
            return False
        # other machines' region vectors (asked until it is yes: they are not taken back)
        if encoder_id not in self._region_data and self.remote.count(encoder_id, "region"):
            self._region_data.add(encoder_id)
        return encoder_id in self._region_data

    def search_image(
        self,
        source: ImageSource,
        top_k: int | None = None,
        threshold: float | None = None,
        region: Box | None = None,
        result_filter: ResultFilter = NO_FILTER,
        cleanup: Cleanup = NO_CLEANUP,
    ) -> list[SearchResult]:
        """Files most like an image or a region of it: full and partial matches."""
        stages = self.image_stages(source, top_k, threshold, region, result_filter, cleanup)
        return _last_stage(stages)

    def search_similar(
        self, path: Path | str, top_k: int | None = None, threshold: float | None = None
    ) -> list[SearchResult]:
        return _last_stage(self.similar_stages(path, top_k, threshold))

    def search_text(
        self,
        text: str,
        top_k: int | None = None,
        threshold: float | None = None,
        result_filter: ResultFilter = NO_FILTER,
    ) -> list[SearchResult]:
        k, t = self._limits(top_k, threshold)
        slot, encoder_id = self._search_slot()
        q = QueryFeatures(slot.get().embed_text([text]))
        search = PartialSearch(self.reader, self.reads, encoder_id, result_filter=result_filter)
        return search.full(q, k, t)

    # -- duplicates -------------------------------------------------------------------
    def duplicates(
        self,
        preset: str = "near",
        threshold: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[DuplicateProgress]:
        """Groups of duplicates (``duplicates.py``); read-only, any thread may run it."""
        _slot, encoder_id = self._search_slot()
        return find_duplicates(self.catalog, self.reads, encoder_id, preset, threshold, cancel)

    def trash_duplicates(self, group: DuplicateGroup, keep: Sequence[str]) -> TrashReport:
        """Move the group's other files to the system trash; call it on the writer thread."""
        return trash_files(self.catalog, self.store, group, keep)

    # -- status -----------------------------------------------------------------------
    def status(self, load_encoder: bool = True) -> LibraryStatus:
        counts = self.catalog.counts()
        vectors: dict[str, int] = {}
        encoder_id = self.encoder_id if load_encoder else self.slot.spec
        for (enc, kind), n in self.catalog.vector_counts().items():
            if enc == encoder_id:
                vectors[kind] = n
        encoder = self.encoder if load_encoder else None
        per_root = self.catalog.counts_by_root()
        return LibraryStatus(
            files=counts["files"],
            distinct=counts["distinct"],
            failed=counts["failed"],
            encoder=encoder_id,
            encoder_label=encoder.describe() if encoder else self.slot.spec,
            device=encoder.device if encoder else self.settings.device,
            model_warning=self.slot.warning,
            vectors=vectors,
            data_dir=str(self.dirs.data),
            store_bytes=_folder_size(self.dirs.data),
            roots=tuple(
                RootStatus(r, os.path.exists(r), per_root.get(r, 0)) for r in self.catalog.roots()
            ),
            failures=tuple(Failure(p, r) for p, r in self.catalog.failures()),
            store_health=(
                "damaged: a search failed on it; it is rebuilt from the catalog at the next "
                "index run or start"
                if self._store_suspect
                else self.store_health
            ),
            catalog_backup=str(backup) if (backup := self.catalog.last_backup()) else None,
            store=self.store_status(),
        )

    def store_status(self) -> dict[str, Any]:
        """Where the vectors live; for a server, whether it answers and what waits."""
        if self.remote is None:
            return {"url": None, "machine": self.machine}
        out: dict[str, Any] = {
            "url": self.remote.url,
            "machine": self.machine,
            "unsynced": unsynced_count(self.catalog),
            "online": True,
            "error": None,
        }
        try:
            self.remote.ping()
        except StoreUnavailable as exc:
            out.update(online=False, error=str(exc))
        return out


def check_indexable(path: Path) -> None:
    """A path that can become a library folder: an existing folder or regular file. A
    missing path or a FIFO named like a photo must not add a phantom folder."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist (and is not a library folder)") from None
    except OSError as exc:
        raise NotFound(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise NotFound(f"{path} is neither a folder nor a regular file")


def _last_stage(stages: Sequence[Stage]) -> list[SearchResult]:
    results: list[SearchResult] = []
    for stage in stages:
        results = stage()
    return results


def _folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


__all__ = ["DesktopAppError", "EncoderSlot", "Library"]
