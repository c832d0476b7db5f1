"""The three signals of one query against one candidate, and what they share.

Both rankings report the original PicTrace's three signals per result and
rank by their mean:

* ``ssim``: SSIM of the 256x256 grayscale thumbnails,
* ``orb``:  ORB matches passing Lowe's ratio test (0.75) / query keypoints,
* ``hist``: correlation of the 32x32x32 BGR histograms.

``seed`` computes them exactly as the original did (FLANN LSH matching,
identity orientation).  ``default`` makes them robust to common edits:
SSIM in the query's best symmetry, for a crop also over the square of the
candidate it fills, and with the candidate warped onto the query by the
homography of their ORB matches (:mod:`pictrace.core.align`); ORB with the
query's mirror image's keypoints when the query is mirrored; histograms
also compared with brightness and contrast undone (:mod:`pictrace.core.tone`).
Which candidates get scored, and in which order, is the search's business
(:mod:`pictrace.core.candidates`, :mod:`pictrace.core.rerank`).

A fourth score, ``semantic``, is the cosine of the two images' looks-like
embeddings (:func:`semantic_similarity`), None when either has none.  It
ranks ``mode=similar``; in the default ranking it joins the mean when both
images have one (:func:`copy_score`): an edit that leaves no ORB match and
moves SSIM and the histograms (an exposure change of a smooth wallpaper,
a recompressed crop) keeps the picture's content, so its embedding stays
close to the original's while a stranger of similar tones and layout
does not.  ``seed`` keeps the original's mean of three.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from pictrace.core import align, transforms
from pictrace.core.features import (
    DECODE_SIDE,
    HIST_BINS,
    ImageFeatures,
    features_from_image,
    orb_features,
    canonical_square,
)
from pictrace.core.decode import decode
from pictrace.core.probe import probe
from pictrace.core.ssim import SSIMStats, ssim_from_stats, ssim_stats
from pictrace.core.tone import tone_normalised

RATIO = 0.75
_HIST_N = HIST_BINS**3
# ORB shares in the default ranking count at least this many query keypoints.
ORB_MIN_KEYPOINTS = 50
# A query whose histogram has this share of its (squared) mass on the grey
# diagonal B = G = R is treated as colourless.
COLOURLESS_SHARE = 0.99
_BINS = np.arange(_HIST_N)
_B, _G, _R = _BINS // HIST_BINS**2, (_BINS // HIST_BINS) % HIST_BINS, _BINS % HIST_BINS
_GREY = (_B == _G) & (_G == _R)
# ITU-R BT.601 weights, as OpenCV's BGR-to-gray conversion uses.
_LUMA_BIN = np.clip(np.rint(0.114 * _B + 0.587 * _G + 0.299 * _R), 0, HIST_BINS - 1).astype(np.intp)

@dataclass(frozen=True)
class Match:
    """One ranked candidate with the signals that explain its score."""

    id: str
    score: float
    ssim: float
    orb: float
    hist: float
    transform: str = "identity"  # the edit that turns the candidate into the query
    meta: dict = field(default_factory=dict, compare=False)
    semantic: float | None = None  # looks-like cosine; None if either image has no embedding

    @property
    def scores(self) -> dict[str, float | None]:
        return {"ssim": self.ssim, "orb": self.orb, "hist": self.hist, "semantic": self.semantic}

    def rounded_scores(self) -> dict[str, float | None]:
        """:attr:`scores` rounded to 6 places, as answers carry them (``semantic`` may be None)."""
        return {k: None if v is None else round(v, 6) for k, v in self.scores.items()}

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "score": round(self.score, 6),
            "scores": self.rounded_scores(),
            "transform": self.transform,
            **{k: v for k, v in self.meta.items() if k not in ("id", "score", "scores", "transform")},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Match":
        s = d["scores"]
        meta = {k: v for k, v in d.items() if k not in ("id", "score", "scores", "transform")}
        return cls(
            id=str(d["id"]),
            score=float(d["score"]),
            ssim=float(s["ssim"]),
            orb=float(s["orb"]),
            hist=float(s["hist"]),
            transform=str(d.get("transform", "identity")),
            meta=meta,
            semantic=None if s.get("semantic") is None else float(s["semantic"]),
        )


@dataclass(frozen=True)
class Centred:
    """A dense vector minus its mean, with its norm: one side of a correlation."""

    values: np.ndarray
    norm: float

    @classmethod
    def of(cls, dense: np.ndarray) -> "Centred":
        values = dense.astype(np.float64) - dense.mean()
        return cls(values, float(np.linalg.norm(values)))


@dataclass(eq=False)
class Query:
    """A query image's features plus what scoring derives from them once."""

    features: ImageFeatures
    hist: Centred = field(init=False)  # the 32^3 histogram, as the original compared it
    hist_root: Centred = field(init=False)  # its square root (default ranking)
    colourless: bool = field(init=False)
    luma_root: Centred = field(init=False)  # square root of the 32-bin brightness histogram
    tone_root: Centred = field(init=False)  # the same with brightness and contrast undone
    _ssim: dict[int, SSIMStats] = field(default_factory=dict, init=False)
    _small: dict[int, dict[float, np.ndarray]] = field(default_factory=dict, init=False)
    _crops: dict[tuple[int, float], SSIMStats] = field(default_factory=dict, init=False)

    @property
    def mirror_descriptors(self) -> np.ndarray | None:
        return self.features.mirror_descriptors

    def __post_init__(self) -> None:
        f = self.features
        dense = np.zeros(_HIST_N, np.float64)
        dense[f.hist_index] = f.hist_value
        self.hist = Centred.of(dense)
        self.hist_root = Centred.of(np.sqrt(dense))
        grey_mass = float((dense[_GREY] ** 2).sum())
        self.colourless = grey_mass >= COLOURLESS_SHARE * float((dense**2).sum())
        self.luma_root = Centred.of(np.sqrt(_luma(f.hist_index, f.hist_value)))
        self.tone_root = Centred.of(tone_normalised(f.hist_index, f.hist_value, brightness_only=self.colourless))

    def ssim_stats(self, index: int) -> SSIMStats:
        if index not in self._ssim:
            self._ssim[index] = ssim_stats(self.thumb(index))
        return self._ssim[index]

    def thumb(self, index: int) -> np.ndarray:
        """The SSIM thumbnail turned by dihedral transform ``index``."""
        return transforms.apply(self.features.thumb, index)

    def crop_stats(self, index: int, scale: float) -> SSIMStats:
        """SSIM statistics of the turned thumbnail shrunk to ``scale``, shared by every candidate."""
        key = (index, scale)
        if key not in self._crops:
            self._crops[key] = ssim_stats(align.scaled(self.thumb(index), scale))
        return self._crops[key]

    def small_thumbs(self, index: int) -> dict[float, np.ndarray]:
        """The turned thumbnail at alignment-search resolution, at every crop scale."""
        if index not in self._small:
            whole = align.small(self.thumb(index))
            self._small[index] = {s: align.scaled(whole, s) for s in align.SCALES}
        return self._small[index]


def query_from_bytes(data: bytes, *, max_pixels: int = 50_000_000) -> Query:
    """Decode query bytes once and derive everything scoring needs.

    Raises the decode errors (``InvalidImage`` and subclasses) for bad input.
    """
    info = probe(data)
    image = decode(data, max_pixels=max_pixels, max_side=DECODE_SIDE)
    return query_from_image(image, hashlib.sha256(data).hexdigest(), info.oriented_size)


def query_from_image(image: np.ndarray, sha256: str, original_size: tuple[int, int] | None = None) -> Query:
    """Build a query from a decoded image, including mirrored ORB descriptors."""
    feats = features_from_image(image, sha256, original_size)
    mirrored = cv2.cvtColor(np.fliplr(canonical_square(image)), cv2.COLOR_BGR2GRAY)
    mirror_kp, mirror_desc = orb_features(np.ascontiguousarray(mirrored))
    # Keypoints go back to the query's own coordinates, for drawing matches.
    mirror_kp[:, 0] = feats.side - 1 - mirror_kp[:, 0]
    return Query(
        features=dataclasses.replace(feats, mirror_keypoints=mirror_kp, mirror_descriptors=mirror_desc)
    )


def semantic_similarity(a: ImageFeatures, b: ImageFeatures) -> float | None:
    """Cosine of two images' float16 embeddings (both stored unit length); None if either has none."""
    if a.embedding is None or b.embedding is None:
        return None
    u, v = a.embedding.astype(np.float32), b.embedding.astype(np.float32)
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(u @ v) / norm if norm > 0 else 0.0


def rank(matches: Iterable[Match], k: int) -> list[Match]:
    """Best ``k`` by score, ties broken by id so the order is deterministic."""
    return sorted(matches, key=lambda m: (-m.score, m.id))[:k]


def aligned_ssim(query: Query, orientation: int, cand: ImageFeatures, homography: np.ndarray | None = None) -> float:
    """SSIM of the thumbnails, or, if higher, after undoing a crop or a warp.

    A cropped query is also compared with the square of the candidate it
    fills, and, given the ``homography`` of their ORB matches, the candidate
    warped onto the query (see :mod:`pictrace.core.align`).
    """
    best = ssim_from_stats(query.ssim_stats(orientation), ssim_stats(cand.thumb))
    found = align.crop_alignment(query.small_thumbs(orientation), cand.thumb)
    if found is not None:
        square = align.candidate_square(found, cand.thumb)
        best = max(best, ssim_from_stats(query.crop_stats(orientation, found.scale), ssim_stats(square)))
    if homography is not None:
        # The keypoints live in the query's own frame, so the warp lines the
        # candidate up with the unturned query.
        warped = align.warp_onto_query(cand.thumb, homography)
        best = max(best, ssim_from_stats(query.ssim_stats(0), ssim_stats(warped)))
    return best


def match_homography(
    query: Query, cand: ImageFeatures, pairs: Sequence[tuple[int, int]], mirrored: bool = False
) -> np.ndarray | None:
    """The homography from candidate to query thumbnail of ORB matches ``pairs``, or None.

    ``pairs`` are (query index, candidate index), of the query's mirrored
    keypoints when ``mirrored``.
    """
    if len(pairs) < align.MIN_INLIERS:
        return None
    f = query.features
    kps = f.mirror_keypoints if mirrored else f.keypoints
    if kps is None:
        return None
    qi, ci = np.array(pairs, dtype=np.intp).T
    side = cand.thumb.shape[0]
    return align.keypoint_homography(
        align.thumb_points(kps[qi], f.side, side), align.thumb_points(cand.keypoints[ci], cand.side, side), side
    )


def _seed_match(query: Query, cand: ImageFeatures, meta: dict) -> Match:
    s = ssim_from_stats(query.ssim_stats(0), ssim_stats(cand.thumb))
    o = orb_ratio_score(query.features.descriptors, cand.descriptors, _flann_knn)
    h = hist_correlation(query, cand)
    return _match(cand.sha256, s, o, h, "identity", meta)


def copy_score(ssim: float, orb: float, hist: float, semantic: float | None = None) -> float:
    """The default ranking's score: the mean of the signals the pair has (``semantic`` only when not None)."""
    if semantic is None:
        return (ssim + orb + hist) / 3.0
    return (ssim + orb + hist + semantic) / 4.0


def _match(cid: str, s: float, o: float, h: float, transform: str, meta: dict) -> Match:
    return Match(id=cid, score=(s + o + h) / 3.0, ssim=s, orb=o, hist=h, transform=transform, meta=dict(meta))


def hist_correlation(query: Query, cand: ImageFeatures) -> float:
    """``cv2.compareHist(..., HISTCMP_CORREL)`` of the 32^3 histograms (the original's signal)."""
    return _sparse_correlation(query.hist, cand.hist_index, cand.hist_value.astype(np.float64))


def hist_similarity(query: Query, cand: ImageFeatures) -> float:
    """The default ranking's histogram signal: correlation of square-rooted histograms.

    Raw counts let one dominant bin (a black border, a flat sky) decide the
    correlation; square roots weigh the whole palette.  A colourless query
    (a grayscale copy) is compared by brightness alone, since its colours
    say nothing about the original's.  The better of the histograms as they
    are and with brightness and contrast undone (:mod:`pictrace.core.tone`)
    counts, so an exposure edit does not hide an otherwise equal palette.
    """
    vals = cand.hist_value.astype(np.float64)
    tone = _dense_correlation(
        query.tone_root, tone_normalised(cand.hist_index, vals, brightness_only=query.colourless)
    )
    if query.colourless:
        luma = np.sqrt(_luma(cand.hist_index, vals))
        return max(_dense_correlation(query.luma_root, luma), tone)
    return max(_sparse_correlation(query.hist_root, cand.hist_index, np.sqrt(vals)), tone)


def _sparse_correlation(query: Centred, index: np.ndarray, vals: np.ndarray) -> float:
    # With the query centred, sum((a - mean a) * (b - mean b)) is a sum over
    # the candidate's non-zero bins only.
    mean_b = vals.sum() / _HIST_N
    var_b = float((vals * vals).sum() - _HIST_N * mean_b * mean_b)
    if var_b <= 0 or query.norm == 0:
        return 0.0
    num = float((query.values[index.astype(np.intp)] * vals).sum())
    return float(num / (query.norm * np.sqrt(var_b)))


def _dense_correlation(query: Centred, b: np.ndarray) -> float:
    b = b - b.mean()
    norm_b = float(np.linalg.norm(b))
    if norm_b == 0 or query.norm == 0:
        return 0.0
    return float(query.values @ b / (query.norm * norm_b))


def _luma(index: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """32-bin brightness histogram folded from the sparse 32^3 BGR histogram."""
    return np.bincount(_LUMA_BIN[index.astype(np.intp)], weights=vals, minlength=HIST_BINS)


def hist_correlation_dense(a: np.ndarray, b: np.ndarray) -> float:
    """Reference: OpenCV's correlation of two dense histograms."""
    return float(cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_CORREL))


def orb_ratio_score(query_desc: np.ndarray, cand_desc: np.ndarray, knn: Callable, min_keypoints: int = 1) -> float:
    """Share of query keypoints whose best match passes Lowe's ratio test (see :func:`orb_share`)."""
    return orb_share(len(good_matches(query_desc, cand_desc, knn)), len(query_desc), min_keypoints)


def orb_share(good: int, query_keypoints: int, min_keypoints: int = 1) -> float:
    """``good`` matches as a share of the query's keypoints, counting at least ``min_keypoints``.

    The original counted at least 1, so a nearly flat query with two
    keypoints and one lucky match scored 0.5.
    """
    return good / max(query_keypoints, min_keypoints, 1)


def matched_points(query: ImageFeatures, cand: ImageFeatures) -> tuple[list[list[float]], bool]:
    """Matched keypoint pairs ``[qx, qy, cx, cy]`` as fractions of each image's width and height.

    Uses the query's mirrored keypoints when they explain more matches; the
    flag says which set was used.
    """
    pairs = good_matches(query.descriptors, cand.descriptors)
    kps, mirrored = query.keypoints, False
    if query.mirror_descriptors is not None and query.mirror_keypoints is not None:
        flipped = good_matches(query.mirror_descriptors, cand.descriptors)
        if len(flipped) > len(pairs):
            pairs, kps, mirrored = flipped, query.mirror_keypoints, True
    qs, cs = float(query.side), float(cand.side)
    out = [
        [float(kps[qi, 0]) / qs, float(kps[qi, 1]) / qs, float(cand.keypoints[ci, 0]) / cs, float(cand.keypoints[ci, 1]) / cs]
        for qi, ci in pairs
    ]
    return out, mirrored


def good_matches(query_desc: np.ndarray, cand_desc: np.ndarray, knn: Callable | None = None) -> list[tuple[int, int]]:
    """(query index, candidate index) of matches passing the ratio test; exact matching unless ``knn`` says otherwise."""
    if len(query_desc) == 0 or len(cand_desc) < 2:
        return []
    return [
        (p[0].queryIdx, p[0].trainIdx)
        for p in (knn or _bf_knn)(query_desc, cand_desc)
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]


_BF = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=False)
_POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="pictrace-score")


def _bf_knn(a: np.ndarray, b: np.ndarray):
    return _BF.knnMatch(a, b, k=2)


def _flann_knn(a: np.ndarray, b: np.ndarray):
    # The original's matcher: FLANN with LSH index, 50 checks.
    flann = cv2.FlannBasedMatcher(
        dict(algorithm=6, table_number=6, key_size=12, multi_probe_level=1), dict(checks=50)
    )
    return flann.knnMatch(a, b, k=2)
