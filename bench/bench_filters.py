"""Search latency with and without a result filter (engine level, both search stages).

    python bench/bench_filters.py [--n 500] [--queries 30] [--model efficientnet-lite0]

A library of real photos (the clothing set) is copied and indexed once under
bench/out/filters/ and reused. Each held-out photo is searched with no filter and with a
filter that keeps about half the library (minimum width at the median, one file type,
a date range, the query's own file hidden), alternating which runs first. The filter is
applied after the catalog lookup with the store over-fetched (engine/filters.py), so the
cost is the larger neighbour query plus a pass over the rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import OUT, bench_folder, median, percentile, real_photos, report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--model", default="efficientnet-lite0")
    args = ap.parse_args()
    base = OUT / f"filters{args.n}"
    photos = real_photos(args.n + args.queries)
    lib_dir = bench_folder(base, photos[: args.n])
    queries = photos[args.n :]

    from desktop_app.engine.filters import NO_FILTER, ResultFilter
    from desktop_app.engine.library import Library
    from desktop_app.engine.settings import Settings

    with Library.open(settings=Settings(model=args.model)) as lib:
        started = time.perf_counter()
        for p in lib.index([lib_dir]):
            if p.summary:
                print(
                    f"  index: {p.summary.embedded} embedded, {time.perf_counter() - started:.0f} s"
                )
        widths = [r.width or 0 for r in lib.catalog.files_under(str(lib_dir.resolve())).values()]
        cut = int(statistics.median(widths))
        one_type = ResultFilter(min_width=cut, file_types=("jpg",), date_from=date(2000, 1, 1))

        def timed(query: Path, f: ResultFilter) -> tuple[float, int]:
            own = ResultFilter(**{**f.__dict__, "exclude_paths": frozenset({str(query)})})
            t = time.perf_counter()
            got = lib.search_image(query, top_k=50, result_filter=own if f.active else f)
            return time.perf_counter() - t, len(got)

        timed(queries[0], NO_FILTER)  # warm-up: encoder first calls, caches
        plain: list[float] = []
        filtered: list[float] = []
        counts: list[int] = []
        for i, q in enumerate(queries):
            order = [(NO_FILTER, plain), (one_type, filtered)]
            if i % 2:
                order.reverse()
            for f, out in order:
                seconds, n = timed(q, f)
                out.append(seconds)
                if f is one_type:
                    counts.append(n)
    ratio = median(filtered) / median(plain)
    print(
        f"\nsearch latency with a result filter: {args.n} images, "
        f"{len(queries)} queries, {args.model}"
    )
    report(
        "bench_filters",
        [
            ("no filter, median", f"{median(plain) * 1000:.0f}", "ms"),
            ("no filter, p90", f"{percentile(plain, 90) * 1000:.0f}", "ms"),
            ("filter on, median", f"{median(filtered) * 1000:.0f}", "ms"),
            ("filter on, p90", f"{percentile(filtered, 90) * 1000:.0f}", "ms"),
            ("filter / no filter (median)", f"{ratio:.3f}", "x"),
            ("results with the filter (median of 50 asked)", f"{median(counts):.0f}", ""),
            ("min width kept", cut, "px"),
        ],
        {"ratio": ratio, "plain_ms": median(plain) * 1000, "filtered_ms": median(filtered) * 1000},
    )


if __name__ == "__main__":
    main()
