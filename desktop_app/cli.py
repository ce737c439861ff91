"""The command line. Its commands, options and JSON shapes are a stable interface:
other tools and the tests depend on them.

    desktop-app                      open the window
    desktop-app gui [IMAGE]          the same, searching by IMAGE
    desktop-app index PATH...        add folders and index them
    desktop-app search IMAGE...      search by image, --text, or --similar-to
    desktop-app status               counts, encoder, failures
    desktop-app forget PATH          remove a folder from the library
    desktop-app duplicates           groups of duplicate photos
    desktop-app eval FOLDER          retrieval metrics on a folder whose sub-folders are labels
    desktop-app models               the encoders, which is active, what each has indexed
    desktop-app store push --to URL  copy the library to a Chroma server (no re-embedding)
    desktop-app store pull --from URL  copy it back into the embedded store

index, search, status and forget take --store-url http://HOST:PORT (and --store-token,
or $DESKTOP_APP_STORE_TOKEN) to use a shared Chroma server instead of the embedded store.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from desktop_app import __version__
from desktop_app.engine.catalog import damage_error
from desktop_app.engine.duplicates import PRESETS
from desktop_app.engine.errors import DesktopAppError
from desktop_app.engine.indexer import IndexSummary, Progress
from desktop_app.engine.paths import resolve_dirs
from desktop_app.logs import setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where the catalog and index live (default: per-user data dir, "
        "or $DESKTOP_APP_HOME/data)",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        default=None,
        help="efficientnet-lite0 (offline), ARCH:PRETRAINED "
        "(e.g. ViT-B-32:laion2b_s34b_b79k) or ARCH:/path/to/weights",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store-url",
        default=None,
        metavar="URL",
        help="a Chroma server (http://HOST:PORT, started with `chroma run`) holding a shared "
        "library; default: the store_url setting, else the embedded store in the data dir",
    )
    token = argparse.ArgumentParser(add_help=False)
    token.add_argument(
        "--store-token",
        default=None,
        metavar="TOKEN",
        help="auth token for the Chroma server (default: $DESKTOP_APP_STORE_TOKEN)",
    )

    p = argparse.ArgumentParser(
        prog="desktop-app",
        parents=[common],
        description="Find similar images in your photo folders. With no command, opens the window.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ix = sub.add_parser(
        "index",
        parents=[common, model, as_json, store, token],
        help="add folders to the library and index them",
    )
    ix.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="folders or files (none: every library folder)",
    )
    ix.add_argument(
        "--no-regions",
        action="store_true",
        help="store full-image vectors only (no partial-region matching)",
    )

    se = sub.add_parser(
        "search", parents=[common, model, as_json, store, token], help="search the library"
    )
    se.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    se.add_argument("--top-k", type=int, default=None, help="how many results (default 50)")
    se.add_argument(
        "--threshold", type=float, default=None, help="minimum similarity, -1..1 (default 0)"
    )
    se.add_argument("--text", action="append", default=[], help="search by a text phrase (CLIP)")
    se.add_argument(
        "--similar-to",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="search by an indexed file's stored vector",
    )
    se.add_argument(
        "--region",
        default=None,
        metavar="x,y,w,h",
        help="search by this region of the query image, in its pixels",
    )

    st = sub.add_parser(
        "status", parents=[common, model, as_json, store, token], help="what the library holds"
    )
    del st
    fg = sub.add_parser(
        "forget", parents=[common, store, token], help="remove a folder from the library"
    )
    fg.add_argument("path", type=Path, metavar="PATH")
    sr = sub.add_parser(
        "store", parents=[common], help="move the library between the embedded store and a server"
    )
    sr_sub = sr.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    push = sr_sub.add_parser(
        "push",
        parents=[common, as_json, token],
        help="upload the library's vectors, keypoints and files to a Chroma server",
    )
    push.add_argument("--to", required=True, metavar="URL", help="http://HOST:PORT")
    pull = sr_sub.add_parser(
        "pull",
        parents=[common, as_json, token],
        help="fill the embedded library from a Chroma server (this machine's files)",
    )
    pull.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="http://HOST:PORT"
    )
    gui = sub.add_parser("gui", parents=[common], help="open the window (the default)")
    gui.add_argument(
        "image",
        nargs="?",
        type=Path,
        metavar="IMAGE",
        help="search by this image once the window is open (what a file manager's "
        '"Open with" passes); a window already open on the data dir is handed it',
    )
    gui.add_argument(
        "--quit-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close the window after this many seconds (smoke tests, screenshots)",
    )
    gui.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        metavar="PNG",
        help="save the window to this file just before it closes (default: after 5 s)",
    )

    du = sub.add_parser(
        "duplicates",
        parents=[common, model, as_json, store, token],
        help="find groups of duplicate photos",
    )
    du.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="near",
        help="; ".join(f"{p.name}: {p.help} (threshold {p.threshold})" for p in PRESETS.values()),
    )
    du.add_argument(
        "--threshold", type=float, default=None, help="minimum similarity (default: the preset's)"
    )

    ev = sub.add_parser(  # no --data-dir: it indexes into a temporary library of its own
        "eval",
        parents=[model, as_json],
        help="retrieval metrics on a folder whose sub-folders are labels",
    )
    ev.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    ev.add_argument("folder", type=Path, metavar="FOLDER")
    ev.add_argument("--k", type=int, default=10, help="cut-off rank for the @k metrics")

    mo = sub.add_parser(
        "models",
        parents=[common, as_json],
        help="the encoders, which is active, what each has indexed (never uses the network)",
    )
    mo.add_argument(
        "--all", action="store_true", help="list every CLIP model, not only those on this machine"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = getattr(args, "data_dir", None)
    command = args.command or "gui"
    _tolerate_any_file_name()
    if command == "gui":
        from desktop_app.ui.app import run_gui

        return run_gui(
            data_dir=data_dir,
            image=getattr(args, "image", None),
            quit_after=getattr(args, "quit_after", None),
            screenshot=getattr(args, "screenshot", None),
        )
    from desktop_app.engine.headless import headless

    dirs = resolve_dirs(data_dir)
    setup_logging(dirs.logs, verbose=getattr(args, "verbose", False))
    try:
        dirs.ensure()
        handler = {
            "index": cmd_index,
            "search": cmd_search,
            "status": cmd_status,
            "forget": cmd_forget,
            "store": cmd_store,
            "duplicates": cmd_duplicates,
            "eval": cmd_eval,
            "models": cmd_models,
        }[command]
        with headless():  # no window in this process: arranged for throughput
            return handler(args)
    except DesktopAppError as exc:
        print(f"desktop-app: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("desktop-app: interrupted", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as exc:  # damage found past the check at open
        log.exception("catalog error in %s", command)
        print(f"desktop-app: error: {damage_error(dirs.catalog_path, str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or an OS fault: one line here, the details in the log
        log.exception("unexpected error in %s", command)
        print(f"desktop-app: error: {_unexpected(exc, dirs.logs)}", file=sys.stderr)
        return 1


def _unexpected(exc: BaseException, logs: Path) -> str:
    return (
        f"unexpected {type(exc).__name__}: {str(exc)[:200] or 'no details'} "
        f"(the details are in {logs / 'desktop-app.log'})"
    )


def _tolerate_any_file_name() -> None:
    """Print a file name that is not valid UTF-8 as its bytes, as ls does, instead of
    dying with UnicodeEncodeError halfway through the results."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="surrogateescape")
            except (ValueError, OSError):
                pass


def _open_library(args: argparse.Namespace, **kwargs: Any) -> Any:
    from desktop_app.engine.library import Library

    return Library.open(
        getattr(args, "data_dir", None),
        model=getattr(args, "model", None),
        progress=_download_bar,
        store_url=getattr(args, "store_url", None),
        store_token=getattr(args, "store_token", None),
        **kwargs,
    )


def cmd_index(args: argparse.Namespace) -> int:
    import threading

    from desktop_app.engine.library import check_indexable
    from desktop_app.engine.scanner import is_within

    cancel = threading.Event()
    with _open_library(args) as lib:
        roots = lib.roots()
        paths = []
        for p in args.paths:
            known = str(p.expanduser().resolve())
            if any(is_within(known, r) for r in roots):
                paths.append(p)  # a library folder, perhaps offline: its entries are kept
                continue
            try:
                check_indexable(p)
            except DesktopAppError as exc:
                print(f"desktop-app: error: {exc}; not added", file=sys.stderr)
                continue
            paths.append(p)
        if args.paths and not paths:
            return 1
        if args.no_regions:
            lib.settings.regions_enabled = False
        bar = ProgressBar(sys.stderr)
        summary: IndexSummary | None = None
        try:
            for progress in lib.index(paths, cancel=cancel):
                bar.update(progress)
                summary = progress.summary or summary
        except KeyboardInterrupt:
            cancel.set()
            raise
        finally:
            bar.close()
        if lib.slot.warning:
            print(f"desktop-app: warning: {lib.slot.warning}", file=sys.stderr)
        assert summary is not None
        _print_summary(summary, lib.encoder_id)
        if summary.store_error:
            print(
                f"desktop-app: warning: {summary.store_error}\n"
                f"  {summary.unsynced} changes wait in the local catalog; "
                "the next index run uploads them",
                file=sys.stderr,
            )
        if args.json:
            print(json.dumps(summary.to_json()))
    return 0


def _print_summary(s: IndexSummary, encoder_id: str) -> None:
    print(
        f"Indexed with {encoder_id} in {s.seconds:.1f} s: {s.seen} seen, {s.embedded} embedded, "
        f"{s.reused} reused, {s.unchanged} unchanged, {s.removed} removed, "
        f"{len(s.failed)} failed" + (" (cancelled)" if s.cancelled else "")
    )
    for folder in s.offline:
        print(f"  offline (entries kept): {folder}")
    if s.failed:
        print("Failed:")
        for path, reason in s.failed:
            print(f"  {path}: {reason}")


def cmd_search(args: argparse.Namespace) -> int:
    if not (args.images or args.text or args.similar_to):
        print("desktop-app: error: give an IMAGE, --text or --similar-to", file=sys.stderr)
        return 2
    region = parse_region(args.region) if args.region else None
    with _open_library(args) as lib:
        # this process holds the data dir's lock and is its writer: searches only read,
        # so a store that lags the catalog (a crash between the two writes) is caught up here
        lib.catch_up_store(lib.encoder_id)
        queries: list[tuple[str, Any]] = []
        for image in args.images:
            queries.append(
                (
                    str(image),
                    lambda i=image: lib.search_image(i, args.top_k, args.threshold, region=region),
                )
            )
        for text in args.text:
            queries.append((text, lambda t=text: lib.search_text(t, args.top_k, args.threshold)))
        for path in args.similar_to:
            queries.append(
                (str(path), lambda p=path: lib.search_similar(p, args.top_k, args.threshold))
            )
        status = 0
        for label, run in queries:
            try:
                results = run()
            except Exception as exc:  # one bad query must not end the others
                if isinstance(exc, DesktopAppError):
                    message = str(exc)
                else:
                    log.exception("unexpected error searching for %s", label)
                    message = _unexpected(exc, lib.dirs.logs)
                print(f"desktop-app: error: {label}: {message}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"query": label, "error": message, "results": []}))
                status = 1
                continue
            if args.json:
                print(json.dumps({"query": label, "results": [r.to_json() for r in results]}))
            else:
                print(f"{label}:")
                if not results:
                    print("  no results")
                for r in results:
                    box = f" region={list(r.region)}" if r.region else ""
                    where = f"  [on {r.host}]" if r.host else ""
                    print(f"  {r.score:.4f}  {r.match:<7} {r.path}{box}{where}")
        if lib.slot.warning:
            print(f"desktop-app: warning: {lib.slot.warning}", file=sys.stderr)
    return status


def parse_region(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise DesktopAppError(f"--region wants x,y,w,h in pixels, got {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise DesktopAppError(f"--region {text}: width and height must be positive")
    return x, y, w, h


def cmd_status(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        st = lib.status()
    if args.json:
        print(json.dumps(st.to_json()))
        return 0
    print(f"Data dir:   {st.data_dir} ({st.store_bytes / 1e6:.1f} MB)")
    print(f"Encoder:    {st.encoder} ({st.encoder_label})")
    if st.model_warning:
        print(f"            {st.model_warning}")
    print(f"Files:      {st.files} indexed, {st.distinct} distinct, {st.failed} failed")
    print("Vectors:    " + (", ".join(f"{n} {k}" for k, n in st.vectors.items()) or "none"))
    for root in st.roots:
        print(f"Folder:     {root.path}" + ("" if root.online else "  (offline)"))
    print(f"Index:      {st.store_health}")
    print(f"Backup:     {st.catalog_backup or 'none yet'}")
    store = st.store or {}
    if store.get("url"):
        state = "answers" if store["online"] else f"NOT REACHABLE: {store['error']}"
        print(f"Store:      {store['url']} as {store['machine']} ({state})")
        print(f"            {store['unsynced']} changes waiting for upload")
    else:
        print("Store:      embedded (in the data dir)")
    if st.failures:
        print("Failures:")
        for f in st.failures:
            print(f"  {f.path}: {f.reason}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    with _open_library(args) as lib:
        removed = lib.forget(args.path)
    print(f"Forgot {args.path}: {removed} files removed from the index")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from desktop_app.engine import transfer

    data_dir = getattr(args, "data_dir", None)
    if args.store_command == "push":
        summary = transfer.push(data_dir, args.to, args.store_token)
        verb, where = "Pushed", f"to {summary.url}"
    else:
        summary = transfer.pull(data_dir, args.source, args.store_token)
        verb, where = "Pulled", f"from {summary.url}"
    print(
        f"{verb} {summary.contents} images ({summary.vectors} vectors, {summary.files} files) "
        f"{where} in {summary.seconds:.1f} s; {summary.embedded} embedded"
    )
    if args.json:
        print(json.dumps(summary.to_json()))
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:

    from desktop_app.engine.duplicates import DuplicateReport

    cancel = threading.Event()
    with _open_library(args) as lib:
        lib.catch_up_store(lib.encoder_id)  # this process is the writer; the scan only reads
        report: DuplicateReport | None = _final_report(
            lib.duplicates(args.preset, args.threshold, cancel), cancel
        )
    assert report is not None
    if args.json:
        print(json.dumps({"groups": [g.to_json() for g in report.groups]}))
        return 0
    files = sum(len(g.files) for g in report.groups)
    print(
        f"{len(report.groups)} groups ({files} files) among {report.images} images, "
        f"preset {report.preset}, threshold {report.threshold}"
    )
    for g in report.groups:
        print(f"{g.kind} {g.score:.4f}")
        for path in g.paths:
            print(f"  {path}")
    return 0


def _final_report(progress: Iterable[Any], cancel: threading.Event) -> Any:
    """Drive a long engine run (progress values, the last carrying ``report``) with a
    one-line counter on a terminal; Ctrl-C cancels it between steps."""
    report = None
    try:
        for p in progress:
            report = p.report or report
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{p.phase:<10} {p.done}/{p.total}   ")
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    return report


def cmd_eval(args: argparse.Namespace) -> int:

    from desktop_app.engine.evaluation import EvalReport, evaluate
    from desktop_app.engine.settings import Settings

    spec = args.model or Settings.load(resolve_dirs(None).settings_path).model
    cancel = threading.Event()
    report: EvalReport | None = _final_report(evaluate(args.folder, spec, args.k, cancel), cancel)
    assert report is not None
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    print(
        f"{report.model}: {report.images} images indexed in {report.index_seconds:.0f} s, "
        f"{report.queries} queries in {report.query_seconds:.1f} s"
        + (f", {report.skipped} skipped (alone in their label)" if report.skipped else "")
        + (f", {len(report.failed)} failed to load" if report.failed else "")
    )
    k = report.k
    print(f"{'label':<16} {'queries':>7}  {'MRR':>6} {f'NDCG@{k}':>8} {f'P@{k}':>6} "
          f"{f'R@{k}':>6} {f'F1@{k}':>6}")  # fmt: skip
    rows = [("all", {**report.overall, "queries": report.queries})]
    rows += sorted(report.per_label.items())
    for label, m in rows:
        print(
            f"{label:<16} {int(m['queries']):>7}  {m['mrr']:>6.3f} {m['ndcg']:>8.3f} "
            f"{m['precision']:>6.3f} {m['recall']:>6.3f} {m['f1']:>6.3f}"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from desktop_app.engine import model_figures
    from desktop_app.engine.catalog import Catalog
    from desktop_app.engine.models import list_models
    from desktop_app.engine.settings import Settings

    dirs = resolve_dirs(getattr(args, "data_dir", None))
    settings = Settings.load(dirs.settings_path)
    counts: dict[tuple[str, str], int] = {}
    active = settings.model
    if dirs.catalog_path.exists():  # read only: no lock, so it works beside the window
        catalog = Catalog(dirs.catalog_path)
        try:
            counts = catalog.vector_counts()
            active = catalog.get_meta("active_model") or active
        finally:
            catalog.close()
    rows = list_models(counts, active, [settings.model])
    if args.json:
        print(json.dumps({"machine": model_figures.MACHINE, "models": [r.to_json() for r in rows]}))
        return 0
    shown = [r for r in rows if args.all or r.cached or r.active or r.indexed or r.kind != "clip"]
    print(f"{'':2}{'model':<44} {'size':>9} {'img/s':>6} {'indexed':>8}  here  note")
    for r in shown:
        size = "?" if r.size_bytes is None else f"{r.size_bytes / 1e6:.0f} MB"
        size = ("≈" if r.size_is_estimate else "") + size
        speed = "" if r.images_per_s is None else f"{r.images_per_s:.0f}"
        mark = "* " if r.active else "  "
        here = "yes" if r.cached else "no"
        print(f"{mark}{r.name:<44} {size:>9} {speed:>6} {r.indexed:>8}  {here:<4}  {r.note}")
    hidden = len(rows) - len(shown)
    if hidden:
        print(f"  ... and {hidden} more CLIP models open_clip can download (--all lists them)")
    print(f"* active. img/s: per CPU core, on {model_figures.MACHINE} (bench/bench_models.py)")
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = 0.0

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and p.phase != "done"):
            return
        self._last = now
        width = 30
        frac = p.done / p.total if p.total else (1.0 if p.phase == "done" else 0.0)
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        name = Path(p.current).name[:30] if p.current else ""
        self.stream.write(
            f"\r{p.phase:<9} [{bar}] {p.done}/{p.total} "
            f"new {p.embedded} reused {p.reused} failed {p.failed} {name:<30}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _download_bar(done: int, total: int, what: str) -> None:
    if sys.stderr.isatty():
        pct = f"{100 * done / total:.0f}%" if total else f"{done / 1e6:.0f} MB"
        sys.stderr.write(f"\rdownloading {what} {pct}   ")
        sys.stderr.flush()
