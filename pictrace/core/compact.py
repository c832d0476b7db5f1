"""The compact index row of an image: what phase 1 reads for every candidate.

A search first ranks every catalog image by three cheap signals read from
index partitions (phase 1), then reranks a short global list with the three
full signals (phase 2, :mod:`pictrace.core.rerank`).  Phase 1 must fit a
million images in a few warm containers, so a row is a few hundred bytes:

* ``layout``: the 256x256 grayscale thumbnail shrunk to 16x16, zero mean,
  as int8 (256 bytes).  Its normalised dot product with the query's
  layout under each of the eight square symmetries is a cross-correlation
  that ignores brightness and contrast.
* ``colour``: a 4x4x4 BGR histogram of square roots (Hellinger), as uint8
  (64 bytes).
* ``words``: visual words of a fixed selection of the image's ORB
  descriptors (:data:`STORED_DESCRIPTORS` of them, each hashed once, to
  :data:`WORD_BITS` of its 256 bits by one of :data:`WORD_TABLES` tables);
  a partition keeps them as an inverted index, so each costs one row
  number there (2 bytes in a partition of up to 65,536 rows).
* ``semantic``: the looks-like embedding as :data:`SEMANTIC_DIMS` int8
  codes (all zero when the image has none), for ``mode=similar``.
* ``tags``: :func:`filter_token` of every (field, value) a search filter
  may ask for, kept like the words as an inverted index, so a filter is
  applied inside phase 1 rather than to its results.  The image's stored
  ImageNet labels join them as field ``"label"`` (:data:`LABEL_FIELD`),
  as many as fit in :data:`MAX_ROW_TAGS` beside the given ones, best first.

The asymmetry is deliberate: the stored side keeps few words, the query
side hashes *every* descriptor in *every* table and also probes every word
one bit away (multi-probe LSH).  A descriptor of the same corner seen again
after an edit differs in a few bits, so it still finds its stored word;
two unrelated descriptors meet about once in ``2**WORD_BITS / (WORD_BITS + 1)``
probes, which keeps chance hits rare even though the query probes widely.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from pictrace.core.features import ImageFeatures

LAYOUT_SIDE = 16
# A crop's layout is the original's seen through a window: the query's layout
# shrunk to these sides and slid over a row's 16x16 grid covers crops keeping
# about 56% and 77% of the area (the whole-frame layout covers the rest).
CROP_SIDES = (12, 14)
COLOUR_BINS = 4
WORD_TABLES = 4
WORD_BITS = 24
STORED_DESCRIPTORS = 128
PROBE_RADIUS = 1
SEMANTIC_DIMS = 96
LABEL_FIELD = "label"
# Tags a row holds at most: with 128 words and 96 codes, ten keep it under 1 KB.
MAX_ROW_TAGS = 10

# Table t reads bits _BIT_ORDER[t * WORD_BITS:(t + 1) * WORD_BITS] of the
# 256-bit descriptor: a fixed spread (73 is coprime to 256), different from
# one table to the next, so the tables fail independently.
_BIT_ORDER = (np.arange(256) * 73 + 11) % 256
_WEIGHTS = (1 << np.arange(WORD_BITS, dtype=np.uint64)).astype(np.uint64)


@dataclass(frozen=True, eq=False)
class IndexRow:
    """One image's phase-1 signals, as stored in a partition."""

    sha256: str
    layout: np.ndarray  # (LAYOUT_SIDE**2,) int8, zero mean
    colour: np.ndarray  # (COLOUR_BINS**3,) uint8, square-rooted counts
    words: np.ndarray  # (w,) uint32, sorted distinct visual words
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(SEMANTIC_DIMS, np.int8))  # (SEMANTIC_DIMS,) int8
    tags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))  # (t,) uint32, sorted distinct tokens

    @property
    def nbytes(self) -> int:
        """Bytes the row takes in a partition: id, layout, colour, semantic codes, 4 per word, 6 per tag."""
        return 32 + self.layout.nbytes + self.colour.nbytes + self.semantic.nbytes + 4 * len(self.words) + 6 * len(self.tags)


def index_row(
    features: ImageFeatures, *, semantic: np.ndarray | None = None, tags: Iterable[tuple[str, str]] = ()
) -> IndexRow:
    """The compact row of an image's detail features (deterministic).

    ``semantic`` is the image's int8 looks-like codes (default: the
    features' own, if they have them); ``tags`` the (field, value) pairs a
    filter may select it by, to which the features' labels are added
    (:func:`label_tags`).
    """
    return IndexRow(
        sha256=features.sha256,
        layout=quantise_layout(layout_vector(features.thumb)),
        colour=colour_counts(features),
        words=stored_words(features.descriptors),
        semantic=semantic_codes(features.semantic if semantic is None else semantic),
        tags=_with_labels(list(tags), features),
    )


def label_tags(features: ImageFeatures) -> list[tuple[str, str]]:
    """The ("label", name) filter pairs of an image's stored ImageNet labels, best first."""
    return [(LABEL_FIELD, name) for name, _ in features.labels]


def filterable(meta: dict, labels) -> dict:
    """What a filter matches an image by: its meta plus its labels as field ``"label"`` (a list).

    ``labels`` are (name, probability) pairs; a meta field named "label" keeps its own values too.
    """
    names = [name for name, _ in labels]
    if not names:
        return meta
    own = meta.get(LABEL_FIELD)
    mine = [own] if isinstance(own, str) else [v for v in own if isinstance(v, str)] if isinstance(own, list) else []
    return {**meta, LABEL_FIELD: [*mine, *names]}


def _with_labels(tags: list[tuple[str, str]], features: ImageFeatures) -> np.ndarray:
    """The row's tokens: the given tags, then label tags while the row holds fewer than MAX_ROW_TAGS."""
    tokens = filter_tokens(tags)
    for pair in label_tags(features):
        if len(tokens) >= MAX_ROW_TAGS:
            break  # a label filter then misses this image; its meta's tags come first
        tokens = np.union1d(tokens, filter_tokens([pair])).astype(np.uint32)
    return tokens


def semantic_codes(codes: np.ndarray | None) -> np.ndarray:
    """A row's (SEMANTIC_DIMS,) int8 semantic codes; zeros stand for none."""
    if codes is None:
        return np.zeros(SEMANTIC_DIMS, np.int8)
    codes = np.asarray(codes)
    if codes.dtype != np.int8 or codes.shape != (SEMANTIC_DIMS,):
        raise ValueError(f"semantic codes must be ({SEMANTIC_DIMS},) int8, got {codes.shape} {codes.dtype}")
    return codes


def filter_token(name: str, value: str) -> int:
    """The 32-bit token of one (field, value) pair, as partitions store and filters look up.

    A hash rather than the text keeps rows small and of fixed width.  Two
    pairs share a token about once in 2**32: a stray row then passes phase
    1's filter, and phase 2, which checks the real values, drops it.
    """
    canonical = json.dumps([name, value], ensure_ascii=False, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(canonical, digest_size=4).digest(), "little")


def filter_tokens(pairs: Iterable[tuple[str, str]]) -> np.ndarray:
    """Sorted distinct tokens of (field, value) pairs, as uint32."""
    return np.unique(np.array([filter_token(n, v) for n, v in pairs], dtype=np.uint32))


def layout_vector(thumb: np.ndarray) -> np.ndarray:
    """16x16 layout of a grayscale thumbnail, zero mean and unit norm (float32)."""
    small = cv2.resize(thumb, (LAYOUT_SIDE, LAYOUT_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    v = small.reshape(-1) - small.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


@functools.cache
def crop_windows() -> tuple[np.ndarray, np.ndarray]:
    """Every placement of a CROP_SIDES window on the layout grid (made once; do not modify).

    Returns ``(masks, sides)``: (LAYOUT_SIDE**2, P) float32 0/1 masks, one
    column per placement, and (P,) the side of each.
    """
    masks, sides = [], []
    for side in CROP_SIDES:
        for y in range(LAYOUT_SIDE - side + 1):
            for x in range(LAYOUT_SIDE - side + 1):
                m = np.zeros((LAYOUT_SIDE, LAYOUT_SIDE), np.float32)
                m[y : y + side, x : x + side] = 1
                masks.append(m.reshape(-1))
                sides.append(side)
    masks_, sides_ = np.stack(masks, axis=1), np.array(sides)
    masks_.flags.writeable = sides_.flags.writeable = False  # shared by every caller
    return masks_, sides_


def crop_kernels(thumb: np.ndarray) -> np.ndarray:
    """(LAYOUT_SIDE**2, P) float32: the query's layout at each crop window placement.

    Column p holds the thumbnail shrunk to that window's side, zero mean and
    unit norm, at the window's cells (zero elsewhere), so a row's grid times
    column p, over the grid's deviation inside the window, is their
    normalised cross-correlation there (:func:`crop_window_norms`).
    """
    masks, sides = crop_windows()
    out = np.zeros_like(masks)
    for side in CROP_SIDES:
        small = cv2.resize(thumb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
        small -= small.mean()
        norm = float(np.linalg.norm(small))
        if norm == 0:
            continue  # a flat query has no layout to find
        for p in np.flatnonzero(sides == side):
            out[masks[:, p] > 0, p] = small / norm
    return out


def crop_window_norms(grids: np.ndarray) -> np.ndarray:
    """(n, P) float32: each grid's deviation from its own mean inside every crop window placement.

    ``grids`` is (n, LAYOUT_SIDE**2) float32.  Flat windows get +inf, so a
    crop cannot correlate with them.
    """
    masks, sides = crop_windows()
    cells = (sides * sides).astype(np.float32)
    sums = grids @ masks
    squares = (grids * grids) @ masks
    var = squares - sums * sums / cells
    # Rounding leaves tiny variances where a window is flat: treat as flat.
    flat = var <= 1e-6 * np.maximum(squares, 1e-12)
    return np.where(flat, np.inf, np.sqrt(np.maximum(var, 0))).astype(np.float32)


def quantise_layout(v: np.ndarray) -> np.ndarray:
    """int8 of a layout vector scaled so its largest magnitude is 127 (norm is restored on use)."""
    peak = float(np.abs(v).max()) if len(v) else 0.0
    if peak == 0:
        return np.zeros(len(v), np.int8)
    return np.clip(np.rint(v * (127.0 / peak)), -127, 127).astype(np.int8)


def colour_counts(features: ImageFeatures) -> np.ndarray:
    """4x4x4 Hellinger histogram folded from the stored 32^3 histogram, as uint8 (peak 255)."""
    bins = features.hist_index.astype(np.int64)
    fold = 32 // COLOUR_BINS
    b, g, r = bins // 1024 // fold, (bins // 32) % 32 // fold, bins % 32 // fold
    coarse = np.zeros(COLOUR_BINS**3, np.float64)
    # The 32^3 values are L2-normalised counts: squares are proportional to pixel shares.
    np.add.at(coarse, (b * COLOUR_BINS + g) * COLOUR_BINS + r, features.hist_value.astype(np.float64) ** 2)
    root = np.sqrt(coarse)
    peak = float(root.max()) if len(root) else 0.0
    if peak == 0:
        return np.zeros(COLOUR_BINS**3, np.uint8)
    return np.rint(root * (255.0 / peak)).astype(np.uint8)


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows as float32 unit vectors (zero rows stay zero)."""
    v = values.astype(np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def descriptor_hashes(descriptors: np.ndarray) -> np.ndarray:
    """(n, WORD_TABLES) uint32: each descriptor's hash in every table (without the table number)."""
    if len(descriptors) == 0:
        return np.zeros((0, WORD_TABLES), np.uint32)
    bits = np.unpackbits(descriptors, axis=1)[:, _BIT_ORDER[: WORD_TABLES * WORD_BITS]]
    per_table = bits.reshape(len(descriptors), WORD_TABLES, WORD_BITS).astype(np.uint64)
    return (per_table @ _WEIGHTS).astype(np.uint32)


def _with_table(hashes: np.ndarray, tables: np.ndarray) -> np.ndarray:
    return (tables.astype(np.uint32) << np.uint32(WORD_BITS)) | hashes


def stored_words(descriptors: np.ndarray) -> np.ndarray:
    """The words a catalog image keeps: STORED_DESCRIPTORS descriptors spread over ORB's list, one table each.

    ORB lists keypoints by pyramid level, so an even spread keeps every
    scale; descriptor i goes to table i mod WORD_TABLES, so every table
    holds a quarter of them and a query corner needs to agree with one.
    """
    n = len(descriptors)
    if n == 0:
        return np.zeros(0, np.uint32)
    pick = np.unique(np.linspace(0, n - 1, min(n, STORED_DESCRIPTORS)).round().astype(np.int64))
    hashes = descriptor_hashes(descriptors[pick])
    tables = np.arange(len(pick)) % WORD_TABLES
    return np.unique(_with_table(hashes[np.arange(len(pick)), tables], tables))


def probe_words(descriptors: np.ndarray) -> np.ndarray:
    """Every word a query descriptor may meet: all tables, and every word within PROBE_RADIUS bits.

    Returns (n, probes) uint32; row i holds descriptor i's probes, so a hit
    can be credited once per query descriptor and stored word.
    """
    n = len(descriptors)
    if n == 0:
        return np.zeros((0, 0), np.uint32)
    hashes = descriptor_hashes(descriptors)  # (n, T)
    flips = [np.uint32(0)]
    if PROBE_RADIUS >= 1:
        flips += [np.uint32(1 << b) for b in range(WORD_BITS)]
    masks = np.array(flips, dtype=np.uint32)
    probes = hashes[:, :, None] ^ masks[None, None, :]  # (n, T, P)
    tables = np.arange(WORD_TABLES, dtype=np.uint32)[None, :, None]
    return _with_table(probes, np.broadcast_to(tables, probes.shape)).reshape(n, -1)
