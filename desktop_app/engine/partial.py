"""Full and partial-region search over the stored vectors and keypoints.

Vector retrieval puts candidates on a shortlist; two checks decide whether the query is
a part of a stored image, or contains it, and where: local features with geometric
verification (ORB + RANSAC similarity transform, ``regions.verify``) for textured
content, and the colour layout (``colour.py``) for what has no corners to match (skies,
gradients, backdrops). The scheme and its parameters were chosen by measurement: see
``bench/bench_regions.py`` and the README.

Stage 1 (``full``): the query and its mirror image against the full-image vectors. Fast;
the window shows it at once.

Stage 2 (``merged``) adds candidates from
  * the query (and mirror) against the region vectors: the query is a crop of a photo;
    also the query as the region vectors see a part of a picture (``region_scaled``:
    one small pass at their scale; it finds parents the plain embedding ranks far down,
    and only nominates: the score keeps the plain region similarity),
  * windows cut from the query (a 3 × 3 grid, and the rectangles ``regions.find_frames``
    sees) against the full-image vectors: the query contains a stored photo (a painting
    on a wall, a photo pasted into a collage),
and verifies a shortlist — the best ``n_full`` by full similarity, then ``n_part`` more
by region similarity, then ``n_window`` more by window similarity — against the cached
keypoints (the mirrored query only for the ``n_full`` best). Beside that (in a second
thread), the best ``n_colour`` by full or region similarity get the colour-layout check
as containing the query, and the best ``n_window + n_full`` window candidates as
contained in it.

Scoring, per stored image (similarities are cosine):
  sim_full = max(query · full, mirror · full)
  sim_part = best similarity of the query or mirror to one of the image's region vectors
             (window similarities only nominate candidates: in the score they promote
             unrelated images for crop queries)
  verified (≥ ``min_inliers`` RANSAC inliers), tier 2:
      score = 0.8 + 0.2 · (0.75 · min(inliers, 25) / 25 + 0.25 · max(sim_full, sim_part))
      match = "full" when each image covers ≥ 80 % of the other, else "partial" with the
      verified box (the query's outline projected into the stored image, its pixels)
  colour layout matches (RMSE at the best place ≤ limit: ``colour.MAX_RMSE`` = 14 levels
  for the query inside the image, ``MAX_RMSE_CONTAINS`` = 18 for the image inside the
  query; and below the matched template's own spread, ``ColourMatch.confirmed``), tier 1:
      score = 0.6 + 0.1 · (1 − rmse / limit) + 0.1 · max(sim_full, sim_part, 0)
      match = "full" when the query spans ≥ 80 % of the stored image, else "partial" with
      the matched box (the whole stored image when the query contains it)
  neither, tier 0:
      score = max(sim_full, sim_part − 0.05)
      match = "partial" (box: the best region's window) when sim_part − 0.05 > sim_full
  near-duplicate (sim_full ≥ ``NEAR_DUPLICATE``: the same picture, e.g. a flat image
  with no keypoints to verify), tier 2:
      score = max(sim_full, the verified score if any), match = "full"
  Results rank by tier, then score: a geometrically verified image always comes first,
  then colour-confirmed ones; a tier-0 score is a plain similarity and may be higher than
  a confirmed one's.

Threads: a search runs on the caller's thread (the window's search pool) and reads the
catalog and the store; two pieces run beside it on a thread of their own each
(``sidetask.beside``: joined before their results are read, and they write nothing
else): the windows' store query, and the colour check, which touches no database. Keypoint
verification runs on the caller's thread and ``VERIFY_THREADS - 1`` helpers from a pool
created and drained within the call, which start when the colour check ends (or when
the caller's thread has run out of candidates or failed); they take candidates in turn
(under a lock), each writes only its candidates' slots of the result list, they read
only the keypoint blobs the caller fetched and touch no database. ``cancel`` (a
``threading.Event`` the window sets when a newer query supersedes this one) is checked
between candidates by all of them, so a superseded partial stage
stops within one candidate's check instead of holding a pool thread for its full length
(the soak found most of the search pool's time spent on such stages).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from desktop_app.engine.analysis import KEYPOINTS, REGION_FULL, TINY
from desktop_app.engine.colour import ColourMatch, ColourMatcher, Tiny, tiny_from_bytes
from desktop_app.engine.errors import SearchCancelled, StoreDamaged
from desktop_app.engine.filters import NO_FILTER, ResultFilter
from desktop_app.engine.regions import Keypoints, Verification, keypoints_from_bytes, verify
from desktop_app.engine.search import Box, ContentReader, Match, SearchResult, expand_to_files
from desktop_app.engine.sidetask import beside
from desktop_app.engine.store import ReadableStore
from desktop_app.engine.vector_ids import parse_vector_id

log = logging.getLogger(__name__)

PART_MARGIN = 0.05
INLIER_SATURATION = 25
FULL_COVERAGE = 0.8
NEAR_DUPLICATE = 0.985  # full-image similarity of the same picture re-encoded or resized
# keypoint verification threads per search: ORB matching releases the GIL, and this
# machine class has 2 cores (more threads only queue behind the colour-check thread)
VERIFY_THREADS = 2


@dataclass
class PartialParams:
    n_full: int = 10  # shortlist: best by full-image similarity (also tried mirrored)
    # then: best by region similarity. Over bench_regions' 588 queries, no crop's parent
    # that a check confirmed came in below 16th by region similarity (1,000 clothing
    # crops: 5th); 25 keeps every one of them and verifies 15 fewer than 40 did, with
    # identical recall, region IoU and labels on all 588 queries
    n_part: int = 25
    n_window: int = 30  # then: best by query-window similarity
    region_k: int = 150  # region vectors fetched per query vector
    window_k: int = 10  # full vectors fetched per query window
    min_inliers: int = 8
    n_colour: int = 30  # unverified shortlist candidates given the colour-layout check


@dataclass
class QueryFeatures:
    """A query, as the search needs it. ``windows`` and the keypoints are computed only
    for the partial stage (``load_partial``), so full results are not kept waiting."""

    vectors: np.ndarray  # (k, d): the query, and its mirror image
    load_partial: Callable[[], None] | None = None
    windows: np.ndarray | None = None  # (m, d) windows of the query
    # the query in the region encoder's space when that is not the main encoder's (CLIP):
    # compared with region vectors; windows are then compared with that space's full vectors
    region_vectors: np.ndarray | None = None
    # the query (and mirror) as a stored region vector sees a part of a picture
    # (``Encoder.embed_as_regions``): only nominates candidates, as the windows do
    region_scaled: np.ndarray | None = None
    keypoints: Keypoints | None = None
    keypoints_flipped: Keypoints | None = None
    small: np.ndarray | None = None  # the query for the colour-layout check (colour.py)
    full_sims: dict[str, float] | None = None  # stage 1's answer, reused by stage 2
    prefer_path: str | None = None


@dataclass
class _Candidate:
    sim_full: float = -1.0
    sim_part: float = -1.0
    sim_window: float = -1.0
    sim_scaled: float = -1.0  # region similarity of ``QueryFeatures.region_scaled``
    region: Box | None = None

    @property
    def sim_region(self) -> float:
        """Region similarity as the shortlist ranks it: either query vector's."""
        return max(self.sim_part, self.sim_scaled)


class PartialSearch:
    def __init__(
        self,
        catalog: ContentReader,
        store: ReadableStore,
        encoder_id: str,
        params: PartialParams | None = None,
        result_filter: ResultFilter = NO_FILTER,
        cancel: threading.Event | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.encoder_id = encoder_id
        self.params = params or PartialParams()
        self.result_filter = result_filter
        self.cancel = cancel or threading.Event()

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise SearchCancelled("superseded by a newer query")

    # -- stage 1 -----------------------------------------------------------------------
    def full(self, q: QueryFeatures, top_k: int, threshold: float) -> list[SearchResult]:
        scored = sorted(self._query_full(q, top_k).items(), key=lambda kv: -kv[1])
        return expand_to_files(
            self.catalog,
            [(fp, s, Match.FULL, None) for fp, s in scored],
            top_k,
            threshold,
            q.prefer_path,
            result_filter=self.result_filter,
        )

    # -- stage 2 -----------------------------------------------------------------------
    def merged(self, q: QueryFeatures, top_k: int, threshold: float) -> list[SearchResult]:
        p = self.params
        self._check_cancel()
        if q.load_partial is not None:
            q.load_partial()
        self._check_cancel()
        cands: dict[str, _Candidate] = {}
        for fp, s in self._query_full(q, top_k).items():
            cands.setdefault(fp, _Candidate()).sim_full = s
        region_q: np.ndarray | None = q.vectors
        windows, window_kind = q.windows, "full"
        if q.region_vectors is not None:
            region_q, window_kind = q.region_vectors, REGION_FULL
            if not self.store.count(self.encoder_id, REGION_FULL):
                # indexed before regions moved to the region encoder: its region vectors
                # are in another space; keypoints and colour still find partial matches
                log.warning("region vectors predate the region encoder: re-index to use them")
                region_q = windows = None
        scaled = [] if q.region_scaled is None else [q.region_scaled]
        # the windows' store query runs beside the regions' (two collections; the store
        # searches without the GIL): 2 × 20 ms → 20 ms
        window_sims, region_sims = beside(
            lambda: (
                {}
                if windows is None or not len(windows)
                else self._full_sims(windows, p.window_k, window_kind)
            ),
            lambda: [] if region_q is None else self._region_sims(region_q, *scaled),
            "window-query",
        )
        if region_sims:
            plain, *rescaled = region_sims
            for fp, (s, box) in plain.items():
                c = cands.setdefault(fp, _Candidate())
                if s > c.sim_part:
                    c.sim_part, c.region = s, box
            for sims in rescaled:
                for fp, (s, box) in sims.items():
                    c = cands.setdefault(fp, _Candidate())
                    if s > c.sim_scaled:
                        c.sim_scaled = s
                        c.region = c.region or box
        for fp, s in window_sims.items():
            c = cands.setdefault(fp, _Candidate())
            c.sim_window = max(c.sim_window, s)
        self._fill_full_sims(q.vectors, cands)
        shortlist, mirrored = self._shortlist(cands)
        # The two checks are independent and spend their time in OpenCV, which releases
        # the GIL: the colour check runs beside keypoint verification (the catalog is
        # read here, so its thread touches no database). It is one thread's work and used
        # to end last, slowed by three threads on two cores: verification starts on one
        # thread and takes the second core once the check is done (the two together,
        # median at 0.3 MP: 158 → 140 ms).
        jobs = self._colour_jobs(q, cands, shortlist)
        verify_helpers_start = threading.Event()

        def colour_check() -> dict[str, ColourMatch]:
            try:
                return {} if q.small is None else colour_matches(q.small, jobs, self.cancel)
            except Exception:  # a failed check only loses its own confirmations
                log.exception("colour-layout check failed")
                return {}
            finally:
                verify_helpers_start.set()

        coloured, verified = beside(
            colour_check,
            lambda: self._verify(q, shortlist, mirrored, verify_helpers_start),
            "colour-check",
        )
        self._check_cancel()  # the colour check may have stopped early: drop its half-answer
        scored = []
        for fp, c in cands.items():
            # Region similarities from another encoder's space are not on the full
            # similarities' scale: there they only nominate candidates for the checks.
            sim_part = c.sim_part if q.region_vectors is None else -1.0
            scored.append(
                (fp, *score(c.sim_full, sim_part, c.region, verified.get(fp), coloured.get(fp)))
            )
        scored.sort(key=lambda t: (-t[4], -t[1]))  # verified first, then by score
        rows = [(fp, s, match, box) for fp, s, match, box, _tier in scored]
        # tier 1 (colour layout) and 2 (keypoints) confirm a partial match; tier 0 is
        # region-embedding similarity alone, shown as "similar region"
        confirmed = frozenset(
            fp for fp, _s, match, _b, tier in scored if tier and match == "partial"
        )
        return expand_to_files(
            self.catalog,
            rows,
            top_k,
            threshold,
            q.prefer_path,
            keep_order=True,
            result_filter=self.result_filter,
            confirmed=confirmed,
        )

    # -- pieces --------------------------------------------------------------------------
    def _query_full(self, q: QueryFeatures, top_k: int) -> dict[str, float]:
        """The query's full-image neighbours; asked once, shared by both stages."""
        if q.full_sims is None:
            k = self.result_filter.fetch_count(top_k)  # over-fetch when a filter is on
            q.full_sims = self._full_sims(q.vectors, max(k, self.params.n_full) + 8)
        return q.full_sims

    def _full_sims(self, vectors: np.ndarray, k: int, kind: str = "full") -> dict[str, float]:
        best: dict[str, float] = {}
        for hits in self.store.query(self.encoder_id, vectors, k, kind):
            for h in hits:
                if h.score > best.get(h.id, -2.0):
                    best[h.id] = h.score
        return best

    def _region_sims(self, *sets: np.ndarray) -> list[dict[str, tuple[float, Box | None]]]:
        """For each set of query vectors, each image's best region similarity and that
        region's box; one store call for all the sets (a call has a fixed cost: the
        query's and its rescaled copy's, 2 × 2 vectors, 30 → 24 ms)."""
        vectors = np.concatenate(sets)
        hits = self.store.query(self.encoder_id, vectors, self.params.region_k, "region")
        if len(hits) != len(vectors):  # a list per query vector: else sets' hits would mix
            raise StoreDamaged(
                f"the vector store answered {len(hits)} lists for {len(vectors)} query vectors"
            )
        bests: list[dict[str, tuple[float, str]]] = []  # per set: fp -> (score, vector id)
        start = 0
        for part in sets:
            best: dict[str, tuple[float, str]] = {}
            for per_vector in hits[start : start + len(part)]:
                for h in per_vector:
                    fp = parse_vector_id(h.id)[0]
                    if h.score > best.get(fp, (-2.0, ""))[0]:
                        best[fp] = (h.score, h.id)
            bests.append(best)
            start += len(part)
        # only the best region of each image needs its box: read afterwards (from the
        # catalog, or a team server), not fetched as metadata with every hit
        boxes = self.catalog.region_boxes(
            self.encoder_id, list({vid for best in bests for _s, vid in best.values()})
        )
        return [{fp: (s, boxes.get(vid)) for fp, (s, vid) in best.items()} for best in bests]

    def _fill_full_sims(self, vectors: np.ndarray, cands: dict[str, _Candidate]) -> None:
        """Exact full similarity for candidates found only through regions or windows."""
        missing = [fp for fp, c in cands.items() if c.sim_full <= -1.0]
        if not missing:
            return
        stored = {
            r.fingerprint: r.vector for r in self.catalog.vectors(self.encoder_id, "full", missing)
        }
        for fp in missing:
            v = stored.get(fp)
            if v is not None:
                cands[fp].sim_full = float(np.max(vectors @ v))

    def _shortlist(self, cands: dict[str, _Candidate]) -> tuple[list[str], set[str]]:
        """Candidates to verify, in priority order, and those to try mirrored too."""
        p = self.params
        out: dict[str, None] = {}
        slots = (("sim_full", p.n_full), ("sim_region", p.n_part), ("sim_window", p.n_window))
        for key, n in slots:
            ranked = sorted(cands, key=lambda fp: -getattr(cands[fp], key))
            added = 0
            for fp in ranked:
                if added >= n:
                    break
                if fp not in out and getattr(cands[fp], key) > -1.0:
                    out[fp] = None
                    added += 1
        mirrored = set(sorted(cands, key=lambda fp: -cands[fp].sim_full)[: p.n_full])
        return list(out), mirrored

    def _verify(
        self,
        q: QueryFeatures,
        shortlist: Sequence[str],
        mirrored: set[str],
        helpers_start: threading.Event | None = None,
    ) -> dict[str, Verification]:
        """Keypoint verification of the shortlist, on ``VERIFY_THREADS`` threads taking
        candidates in turn: this one and helpers from a pool of the call's own, which
        start once ``helpers_start`` is set (by whoever the caller arranged: in
        ``merged``, the colour check when it ends) or, at the latest, when this thread
        has run out of candidates or failed, so they never wait for good. The matching is
        OpenCV (GIL released), so the threads use the cores; each candidate is checked
        independently, so the answer is the same as one thread's."""
        if q.keypoints is None or not shortlist:
            return {}
        blobs = self.catalog.features(KEYPOINTS, shortlist)
        query, flipped = q.keypoints, q.keypoints_flipped

        def check(fp: str) -> Verification | None:
            if self.cancel.is_set():
                return None  # the caller raises SearchCancelled after the pool drains
            blob = blobs.get(fp)
            if blob is None:
                return None
            try:
                cand = keypoints_from_bytes(blob)
            except ValueError:
                log.warning("damaged keypoint blob for %s", fp)
                return None
            mirror = flipped if fp in mirrored else None
            return verify(query, cand, mirror, min_inliers=self.params.min_inliers)

        found: list[Verification | None] = [None] * len(shortlist)  # each index: one writer
        order = iter(range(len(shortlist)))
        taking = threading.Lock()  # guards ``order`` and ``failed``
        failed = False  # this thread's turn raised: the helpers take no more candidates

        def take_turns(wait: threading.Event | None = None) -> None:
            if wait is not None:
                wait.wait()
            while True:
                with taking:
                    i = None if failed else next(order, None)
                if i is None:
                    return
                found[i] = check(shortlist[i])

        helpers = VERIFY_THREADS - 1
        with ThreadPoolExecutor(max(1, helpers), thread_name_prefix="verify") as pool:
            started: list[Future[None]] = []
            try:
                started += [pool.submit(take_turns, helpers_start) for _ in range(helpers)]
                take_turns()
            except BaseException:
                with taking:
                    failed = True
                raise
            finally:  # the helpers start now at the latest: the pool's exit waits for them
                if helpers_start is not None:
                    helpers_start.set()
            for f in started:
                f.result()
        self._check_cancel()
        return {fp: v for fp, v in zip(shortlist, found, strict=True) if v is not None}

    def _colour_jobs(
        self, q: QueryFeatures, cands: dict[str, _Candidate], shortlist: Sequence[str]
    ) -> list[tuple[str, bytes, bool]]:
        """What the colour-layout check compares: (fingerprint, colour blob, contained?)
        for the best ``n_colour`` of the shortlist by full or region similarity (as
        containing the query) and the best ``n_window + n_full`` by window similarity
        (as contained in it). A keypoint-confirmed result outranks it anyway."""
        if q.small is None:
            return []
        p = self.params
        inside = sorted(shortlist, key=lambda fp: -max(cands[fp].sim_full, cands[fp].sim_region))
        windowed = [fp for fp in shortlist if cands[fp].sim_window > -1.0]
        contains = sorted(windowed, key=lambda fp: -cands[fp].sim_window)
        plan = [(fp, False) for fp in inside[: p.n_colour]]
        plan += [(fp, True) for fp in contains[: p.n_window + p.n_full]]
        blobs = self.catalog.features(TINY, list({fp for fp, _ in plan}))
        return [(fp, blobs[fp], contained) for fp, contained in plan if fp in blobs]


def colour_matches(
    query: np.ndarray,
    jobs: Sequence[tuple[str, bytes, bool]],
    cancel: threading.Event | None = None,
) -> dict[str, ColourMatch]:
    """The confirmed colour matches of ``_colour_jobs``, the closer one per image; it
    stops early (with what it has) once ``cancel`` is set."""
    matcher = ColourMatcher(query, confirmed_only=True)
    tinies: dict[str, Tiny | None] = {}
    out: dict[str, ColourMatch] = {}
    for fp, blob, contained in jobs:
        if cancel is not None and cancel.is_set():
            break
        if fp not in tinies:
            try:
                tinies[fp] = tiny_from_bytes(blob)
            except ValueError:
                log.warning("damaged colour blob for %s", fp)
                tinies[fp] = None
        tiny = tinies[fp]
        if tiny is None:
            continue
        m = matcher.match_contains(tiny) if contained else matcher.match_inside(tiny)
        if m is None or not m.confirmed:
            continue
        if fp not in out or m.rmse / m.limit < out[fp].rmse / out[fp].limit:
            out[fp] = m
    return out


def score(
    sim_full: float,
    sim_part: float,
    region: Box | None,
    v: Verification | None,
    colour: ColourMatch | None = None,
) -> tuple[float, Match, Box | None, int]:
    """(score, match, region, tier) for one stored image; see the module docstring."""
    sim = max(sim_full, sim_part, 0.0)
    if sim_full >= NEAR_DUPLICATE and (v is None or v.cand_coverage >= FULL_COVERAGE):
        verified = (
            0.8 + 0.2 * (0.75 * min(v.inliers, INLIER_SATURATION) / INLIER_SATURATION + 0.25 * sim)
            if v is not None
            else 0.0
        )
        return max(sim_full, verified), Match.FULL, None, 2
    if v is not None:
        strength = 0.75 * min(v.inliers, INLIER_SATURATION) / INLIER_SATURATION
        s = 0.8 + 0.2 * (strength + 0.25 * sim)
        full = v.cand_coverage >= FULL_COVERAGE and v.query_coverage >= FULL_COVERAGE
        return s, Match.FULL if full else Match.PARTIAL, None if full else v.box, 2
    if colour is not None:
        s = 0.6 + 0.1 * (1.0 - colour.rmse / colour.limit) + 0.1 * sim
        full = not colour.contains and colour.coverage >= FULL_COVERAGE
        return s, Match.FULL if full else Match.PARTIAL, None if full else colour.box, 1
    if sim_part - PART_MARGIN > sim_full:
        return sim_part - PART_MARGIN, Match.PARTIAL, region, 0
    return sim_full, Match.FULL, None, 0
