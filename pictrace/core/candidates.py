"""Phase 1 of a search: score every row of a partition by cheap signals, keep the best.

Three signals, each blind to edits the others see:

* ``layout``: cross-correlation of 16x16 layouts, the best of the query's
  eight square symmetries or of the query as a crop, its layout shrunk and
  slid over the row's (:func:`crop_scores`; survives exposure edits,
  grayscale, turns, mirrors and crops that keep most of the picture),
* ``colour``: cosine of square-rooted 4x4x4 colour histograms (survives
  crops and turns; fails on grayscale copies and exposure edits),
* ``words``: how many query ORB descriptors meet a visual word the row keeps
  (:mod:`pictrace.core.compact`; survives crops and edits that keep
  corners, fails on flat pictures),

plus their blend ``layout + colour``; ``mode="similar"`` picks by one signal
instead, ``semantic``: the cosine of the rows' int8 looks-like codes with the
query's (one (n, 96) matrix product; rows without codes never compete).
Every candidate carries its semantic score either way, so phase 2 reports
it beside the three signals.  A partition returns the union of its
best rows by each signal; merging those lists from every partition and
keeping the union of the global best by each signal again
(:func:`shortlist`) gives exactly the rows that the same rule applied to the
whole catalog at once would pick.  That global shortlist is all phase 2
(:mod:`pictrace.core.rerank`) ever sees, so rerank work does not grow with
the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from pictrace.core import compact, transforms
from pictrace.core.partition import Partition

SIGNALS = ("layout", "colour", "blend", "words")
MODES = ("default", "similar")
DEFAULT_PER_SIGNAL = 24
# A filter matching at most 1/SUBSET_SHARE of a partition's rows scores them as a partition of their own.
SUBSET_SHARE = 4
# Layout similarity at which a quarter turn of the query is believed.
TRUSTED_LAYOUT = 0.5
_MIRRORED = np.array([transforms.is_mirror(i) for i in range(len(transforms.DIHEDRAL))])


@dataclass(frozen=True, eq=False)
class CandidateQuery:
    """The query side of phase 1, derived once per search."""

    layouts: np.ndarray  # (8, 256) float32 unit layouts, one per square symmetry
    colour: np.ndarray  # (64,) float32 unit vector
    probes: "Probes"  # word probes of the query's descriptors
    mirror_probes: "Probes"  # the same for its mirror image's descriptors
    semantic: np.ndarray | None = None  # (SEMANTIC_DIMS,) float32 unit looks-like vector; None without the model
    crops: np.ndarray | None = None  # (256, P) float32 crop kernels (compact.crop_kernels); None: no crop signal

    @classmethod
    def of(
        cls, thumb: np.ndarray, colour: np.ndarray, descriptors: np.ndarray, mirror: np.ndarray | None,
        semantic: np.ndarray | None = None,
    ) -> "CandidateQuery":
        """From a query's SSIM thumbnail, compact colour, ORB descriptors, mirrored ones and int8 looks-like codes."""
        grid = compact.layout_vector(thumb).reshape(compact.LAYOUT_SIDE, compact.LAYOUT_SIDE)
        layouts = np.stack([transforms.apply(grid, i).reshape(-1) for i in range(len(transforms.DIHEDRAL))])
        return cls(
            layouts=layouts.astype(np.float32),
            colour=compact.unit_rows(colour[None, :])[0],
            probes=Probes.of(compact.probe_words(descriptors)),
            mirror_probes=Probes.of(compact.probe_words(mirror if mirror is not None else np.zeros((0, 32), np.uint8))),
            semantic=None if semantic is None else compact.unit_rows(np.asarray(semantic)[None, :])[0],
            crops=compact.crop_kernels(thumb),
        )


@dataclass(frozen=True, eq=False)
class Probes:
    """A query's word probes sorted, each with the descriptor it came from.

    Sorted probes make the look-up in a partition's sorted words walk
    memory in one direction (several times faster than random order).
    """

    keys: np.ndarray  # (m,) uint32, sorted
    descriptors: np.ndarray  # (m,) int32

    @classmethod
    def of(cls, probes: np.ndarray) -> "Probes":
        """From :func:`pictrace.core.compact.probe_words` output, (n, P)."""
        if probes.size == 0:
            return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32))
        flat = probes.reshape(-1)
        order = np.argsort(flat, kind="stable")
        return cls(flat[order], (order // probes.shape[1]).astype(np.int32))


def query_side(query) -> CandidateQuery:
    """The phase-1 side of a :class:`pictrace.core.scoring.Query`."""
    f = query.features
    return CandidateQuery.of(f.thumb, compact.colour_counts(f), f.descriptors, query.mirror_descriptors, f.semantic)


@dataclass(frozen=True)
class Candidate:
    """A row phase 1 sends on, with the cheap scores that chose it."""

    id: str
    layout: float
    colour: float
    own_words: int  # query descriptors meeting the row's words
    mirror_words: int  # the same for the query's mirror image
    orientation: int  # the symmetry of the query that best lines it up with this row
    semantic: float | None = None  # cosine of the looks-like codes; None if the row or the query has none

    @property
    def words(self) -> int:
        return max(self.own_words, self.mirror_words)

    @property
    def mirror_is_clear(self) -> bool:
        """Whether the words tell a mirror image from an unmirrored one beyond doubt.

        Repetitive or symmetric pictures (coins, tiles, faces) meet about as
        many words either way; then phase 2 matches both.
        """
        lo, hi = sorted((self.own_words, self.mirror_words))
        return hi >= 2 * lo + 4

    def signal(self, name: str) -> float:
        if name == "semantic":
            return -np.inf if self.semantic is None else self.semantic
        return self.layout + self.colour if name == "blend" else getattr(self, name)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "layout": round(self.layout, 6),
            "colour": round(self.colour, 6),
            "words": [self.own_words, self.mirror_words],
            "orientation": self.orientation,
            "semantic": None if self.semantic is None else round(self.semantic, 6),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Candidate":
        orientation = int(d["orientation"])
        if not 0 <= orientation < len(transforms.DIHEDRAL):
            raise ValueError(f"orientation {orientation} is out of range")
        own, mirror = (int(w) for w in d["words"])
        semantic = None if d.get("semantic") is None else float(d["semantic"])
        return cls(str(d["id"]), float(d["layout"]), float(d["colour"]), own, mirror, orientation, semantic)


def candidates(
    query: CandidateQuery,
    partition: Partition,
    *,
    per_signal: int = DEFAULT_PER_SIGNAL,
    mode: str = "default",
    exclude: Iterable[str] = (),
    tags: Sequence[np.ndarray] = (),
) -> list[Candidate]:
    """The union of ``partition``'s best ``per_signal`` rows by each signal; ids in ``exclude`` never.

    ``tags`` is a filter as token sets (:meth:`pictrace.core.filters.Filter.tokens`):
    only rows holding one token of every set compete, so every signal's top
    list is made of matching rows and a filtered search finds as many
    matches as exist, not the matches among the best unfiltered rows.
    """
    n = len(partition)
    if n == 0 or per_signal <= 0:
        return []
    alive = np.ones(n, dtype=bool)
    excluded = set(exclude)
    if excluded:
        alive = np.array([i not in excluded for i in partition.id_list()], dtype=bool)
    if tags:
        alive &= tagged(partition, tags)
        matching = int(alive.sum())
        if matching == 0:
            return []  # nothing here matches: no signal needs computing
        if matching * SUBSET_SHARE <= n:
            # Few rows match: score those alone (every signal is per row, so the candidates are the same).
            return candidates(query, partition.take(np.flatnonzero(alive)), per_signal=per_signal, mode=mode)
    layouts = layout_scores(query, partition)  # (n, 8)
    colour = colour_scores(query, partition)
    shared = np.stack([word_hits(query.probes, partition), word_hits(query.mirror_probes, partition)])
    words = shared.max(axis=0).astype(np.float64)
    layout = np.maximum(layouts.max(axis=1), crop_scores(query, partition))
    orientation = orientations(layouts, shared)
    semantic = semantic_scores(query, partition)
    picked: set[int] = set()
    for signal in _picking(mode, layout, colour, words, semantic):
        masked = np.where(alive, signal, -np.inf)
        picked.update(int(r) for r in _top(masked, per_signal) if np.isfinite(masked[r]))
    ids = partition.id_list()
    return [
        Candidate(ids[r], float(layout[r]), float(colour[r]), int(shared[0, r]), int(shared[1, r]), int(orientation[r]),
                  None if np.isnan(semantic[r]) else float(semantic[r]))
        for r in sorted(picked)
    ]


def tagged(partition: Partition, tags: Sequence[np.ndarray]) -> np.ndarray:
    """(n,) bool: rows that hold, for every token set, at least one of its tokens (an empty set matches none)."""
    mask = np.ones(len(partition), dtype=bool)
    for tokens in tags:
        hit = np.zeros(len(partition), dtype=bool)
        for token in tokens:
            hit[partition.rows_tagged(int(token))] = True
        mask &= hit
    return mask


def _picking(mode: str, layout, colour, words, semantic) -> list[np.ndarray]:
    """The per-row signals whose top lists a partition sends on, in ``mode``."""
    if mode == "similar":
        return [np.where(np.isnan(semantic), -np.inf, semantic)]
    if mode != "default":
        raise ValueError(f"mode must be one of {MODES}")
    return [layout, colour, layout + colour, np.where(words > 0, words, -np.inf)]


def semantic_scores(query: CandidateQuery, partition: Partition) -> np.ndarray:
    """(n,) cosine of every row's looks-like codes with the query's; NaN for rows without codes, or all without a query vector."""
    if query.semantic is None:
        return np.full(len(partition), np.nan)
    rows = partition.unit_semantic()
    scores = (rows @ query.semantic).astype(np.float64)
    return np.where(partition.semantic.any(axis=1), scores, np.nan)


def shortlist(found: Iterable[Candidate], per_signal: int = DEFAULT_PER_SIGNAL, mode: str = "default") -> list[Candidate]:
    """Merge partitions' candidates into the global shortlist: the union of the best ``per_signal`` by each signal.

    In ``mode="similar"`` the one signal is ``semantic``.

    An id met twice (an image both pending and packed) keeps its first entry.
    Ordered best first by the candidate's best rank over the signals, then id.
    """
    unique: dict[str, Candidate] = {}
    for c in found:
        unique.setdefault(c.id, c)
    pool = list(unique.values())
    best_rank: dict[str, int] = {}
    for name in ("semantic",) if mode == "similar" else SIGNALS:
        eligible = [c for c in pool if (name != "words" or c.words > 0) and np.isfinite(c.signal(name))]
        eligible.sort(key=lambda c: (-c.signal(name), c.id))
        for rank, c in enumerate(eligible[:per_signal]):
            best_rank[c.id] = min(rank, best_rank.get(c.id, rank))
    return sorted((unique[i] for i in best_rank), key=lambda c: (best_rank[c.id], c.id))


def layout_scores(query: CandidateQuery, partition: Partition) -> np.ndarray:
    """(n, 8) correlation of every row's layout with the query's under each symmetry."""
    return partition.unit_layouts() @ query.layouts.T


def crop_scores(query: CandidateQuery, partition: Partition) -> np.ndarray:
    """(n,) best normalised cross-correlation of the query, as a crop, with a window of every row's layout.

    A crop's whole-frame layout lines up with no symmetry of its original
    (its frame is another), so layout alone missed crops that also lost
    colour or corners (grayscale and blurred, or re-exposed and
    recompressed).  Windows are upright and unmirrored: mirrored or turned
    crops are left to the words.
    """
    if query.crops is None or len(partition) == 0:
        return np.full(len(partition), -np.inf)
    return ((partition.unit_layouts() @ query.crops) / partition.crop_window_norms()).max(axis=1)


def colour_scores(query: CandidateQuery, partition: Partition) -> np.ndarray:
    """(n,) cosine of every row's colour histogram with the query's."""
    return partition.unit_colours() @ query.colour


def word_hits(probes: Probes, partition: Partition) -> np.ndarray:
    """(n,) per row, how many query descriptors meet one of its stored words, one to one.

    A row scores the smaller of the number of query descriptors that hit it
    and the number of its stored words that were hit, so neither a flat query
    whose descriptors all look alike nor a row with one common word scores
    by repetition.
    """
    n = len(partition)
    words = partition.words
    if len(probes.keys) == 0 or len(words) == 0:
        return np.zeros(n, np.int64)
    lo = np.searchsorted(words, probes.keys, "left")
    hits = np.searchsorted(words, probes.keys, "right") - lo
    hit = hits > 0
    if not hit.any():
        return np.zeros(n, np.int64)
    lo, hits = lo[hit], hits[hit]
    descriptor = np.repeat(probes.descriptors[hit].astype(np.int64), hits)
    posting = np.repeat(lo - np.cumsum(hits) + hits, hits) + np.arange(int(hits.sum()))
    rows = partition.word_rows[posting].astype(np.int64)
    by_descriptor = np.bincount(_distinct(descriptor * n + rows) % n, minlength=n)
    by_word = np.bincount(partition.word_rows[_distinct(posting)].astype(np.int64), minlength=n)
    return np.minimum(by_descriptor, by_word)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (numpy's hash-based unique is slower on these sizes)."""
    v = np.sort(values)
    return v[np.r_[True, v[1:] != v[:-1]]] if len(v) else v


def orientations(layout: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """Per row, the symmetry of the query that best lines it up with the candidate.

    Layout alone is misled by crops, whose frame differs from the original's.
    Where the row shares visual words with the query, the words say whether
    the query is mirrored (ORB descriptors change under a mirror, not under a
    turn); layout picks the quarter turn among those four symmetries, but
    only if it matches well (TRUSTED_LAYOUT): a crop resembles no turn of
    its original in particular, and most pictures are upright.
    """
    has_words = shared.max(axis=0) > 0
    say_mirror = np.where(has_words, shared[1] > shared[0], _MIRRORED[layout.argmax(axis=1)])
    allowed = _MIRRORED[None, :] == say_mirror[:, None]
    best = np.where(allowed, layout, -np.inf).argmax(axis=1)
    trusted = layout[np.arange(len(best)), best] >= TRUSTED_LAYOUT
    upright = np.where(say_mirror, transforms.DIHEDRAL.index((True, 0)), 0)
    return np.where(trusted, best, upright)


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """The rows of the ``n`` largest values; of rows tied at the last place, the earliest.

    Ties are common (word counts are small integers), and breaking them by
    row order makes the pick the same whether a filter's rows are scored in
    place or as a partition of their own (:meth:`Partition.take` keeps order).
    """
    if n >= len(values):
        return np.arange(len(values))
    last = -np.partition(-values, n - 1)[n - 1]
    above = np.flatnonzero(values > last)
    return np.concatenate([above, np.flatnonzero(values == last)[: n - len(above)]])
