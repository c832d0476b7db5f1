"""Phase 2 of a search: the three signals for the global shortlist, cheapest first.

A candidate's score is the mean of ``ssim``, ``orb``, ``hist`` and, when
both images have embeddings, ``semantic``
(:func:`pictrace.core.scoring.copy_score`).  ORB matching and the
histogram cost about a third of the work, the embeddings' cosine next to
nothing; SSIM with crop and warp alignment the rest.  Since SSIM is at most
1, the score with SSIM taken as 1 bounds a candidate's score once its
cheap signals are known.  The cascade therefore:

1. computes ORB, histograms and the semantic score for every candidate;
2. takes candidates by that bound, best first, and computes SSIM;
3. stops when the k-th best exact score so far is at least the next bound:
   no candidate left can enter the top k.

The result equals scoring every candidate in full; :class:`Work` counts
what the stop saved.

``mode="similar"`` ranks by looks-like similarity instead: every candidate's
``semantic`` score is the cosine of the full 1280-d embeddings (read with
the detail features; the phase-1 codes stand in for features without one),
the best ``k`` by it are the answer, and only those ``k`` get the three
signals, which are reported but do not reorder them.  Either mode reports
``semantic`` on every match.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from pictrace.core import transforms
from pictrace.core.align import dihedral_of
from pictrace.core.candidates import Candidate
from pictrace.core.features import ImageFeatures
from pictrace.core.parallel import WORKERS, parallel_map
from pictrace.core.scoring import (
    ORB_MIN_KEYPOINTS,
    Match,
    Query,
    _match,
    _seed_match,
    aligned_ssim,
    copy_score,
    good_matches,
    hist_similarity,
    match_homography,
    orb_share,
    rank,
    semantic_similarity,
)

RANKINGS = ("default", "seed")
MODES = ("default", "similar")


@dataclass(frozen=True)
class Work:
    """What a rerank did: candidates seen, and how many needed SSIM."""

    candidates: int
    full: int

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "full": self.full}


@dataclass(frozen=True)
class _Cheap:
    candidate: Candidate
    features: ImageFeatures
    orb: float
    hist: float
    pairs: list
    mirrored: bool
    orientation: int
    semantic: float | None

    @property
    def bound(self) -> float:
        return copy_score(1.0, self.orb, self.hist, self.semantic)


def rerank(
    query: Query,
    shortlist: Sequence[Candidate],
    details: Mapping[str, ImageFeatures],
    *,
    k: int,
    ranking: str = "default",
    cascade: bool = True,
    mode: str = "default",
) -> tuple[list[Match], Work]:
    """The best ``k`` of ``shortlist`` by the three signals, and the work it took.

    Candidates missing from ``details`` (deleted while the search ran) are
    skipped.  ``seed`` scores every candidate with the original's exact
    signals (FLANN matching, no alignment) and has no cascade;
    ``cascade=False`` computes every signal of every candidate (for
    measuring what the cascade saves; the ranking is the same).
    """
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    work = [(c, details[c.id]) for c in shortlist if c.id in details]
    if k <= 0 or not work:
        return [], Work(len(work), 0)
    if mode == "similar":
        return _similar(query, work, k, ranking)
    matches, done = _copies(query, work, k, ranking, cascade)
    if ranking == "seed":
        semantic = {c.id: _semantic(query, c, f) for c, f in work}
        matches = [replace(m, semantic=semantic[m.id]) for m in matches]
    return matches, done


def _semantic(query: Query, cand: Candidate, features: ImageFeatures) -> float | None:
    """The looks-like score: full embeddings when both have them, else the phase-1 codes' cosine."""
    full = semantic_similarity(query.features, features)
    return cand.semantic if full is None else full


def _similar(query: Query, work: list, k: int, ranking: str) -> tuple[list[Match], Work]:
    """The ``k`` most alike by semantic score, each with the three signals as well."""
    scored = [(s, c, f) for c, f in work if (s := _semantic(query, c, f)) is not None]
    best = sorted(scored, key=lambda t: (-t[0], t[1].id))[:k]

    def signals(item) -> Match:
        s, c, f = item
        m = _seed_match(query, f, {}) if ranking == "seed" else _full(query, _cheap(query, c, f))
        return replace(m, score=s, semantic=s)

    return rank(_map(signals, best), k), Work(len(work), len(best))


def _copies(query: Query, work: list, k: int, ranking: str, cascade: bool) -> tuple[list[Match], Work]:
    """The default mode: the best ``k`` by :func:`copy_score`, cheapest first."""
    if ranking == "seed":
        return rank(_map(lambda item: _seed_match(query, item[1], {}), work), k), Work(len(work), len(work))
    cheap = sorted(_map(lambda item: _cheap(query, *item), work), key=lambda c: (-c.bound, c.candidate.id))
    best: list[Match] = []
    full = 0
    # SSIM runs in rounds as wide as the thread pool; the stop is checked between rounds.
    step = max(1, WORKERS)
    for start in range(0, len(cheap), step):
        if cascade and len(best) >= k and best[k - 1].score >= cheap[start].bound:
            break
        round_ = cheap[start : start + step]
        best = rank([*best, *_map(lambda c: _full(query, c), round_)], max(k, 1))
        full += len(round_)
    return best[:k], Work(len(work), full)


def _cheap(query: Query, cand: Candidate, features: ImageFeatures) -> _Cheap:
    # Exact matching keeps scores deterministic (FLANN's LSH tables are random).
    # Matching costs most of this step, so the query's mirrored keypoints are
    # matched only when phase 1 says the query is mirrored, and both sets
    # only when its words could not tell.
    has_mirror = query.mirror_descriptors is not None
    sides = [transforms.is_mirror(cand.orientation) and has_mirror]
    if has_mirror and not cand.mirror_is_clear:
        sides = [False, True]
    best = None
    for mirrored in sides:
        descriptors = query.mirror_descriptors if mirrored else query.features.descriptors
        pairs = good_matches(descriptors, features.descriptors)
        if best is None or len(pairs) > len(best[1]):
            best = (mirrored, pairs, len(descriptors))
    mirrored, pairs, n = best
    orientation = cand.orientation
    if mirrored != transforms.is_mirror(orientation):
        # The keypoints overrule phase 1's guess: take the upright symmetry of that side.
        orientation = transforms.DIHEDRAL.index((mirrored, 0))
    orb = orb_share(len(pairs), n, ORB_MIN_KEYPOINTS)
    return _Cheap(
        cand, features, orb, hist_similarity(query, features), pairs, mirrored, orientation, _semantic(query, cand, features)
    )


def _full(query: Query, c: _Cheap) -> Match:
    orientation = c.orientation
    h = match_homography(query, c.features, c.pairs, c.mirrored)
    if h is not None:
        # Matched keypoints know the turn better than the coarse layout does.
        orientation = transforms.inverse(dihedral_of(h, c.features.thumb.shape[0]))
    s = aligned_ssim(query, orientation, c.features, h)
    # The query was turned by ``orientation`` to line up with the candidate, so
    # the edit that made the query from the candidate is its inverse.
    transform = transforms.name(transforms.inverse(orientation))
    return replace(
        _match(c.features.sha256, s, c.orb, c.hist, transform, {}),
        score=copy_score(s, c.orb, c.hist, c.semantic), semantic=c.semantic,
    )


_map = parallel_map
