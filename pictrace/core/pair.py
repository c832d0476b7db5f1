"""Comparing two images: the signals a search would report for one pair, and why.

The pair goes through both phases of a search on a partition of one image
(:mod:`pictrace.core.candidates`, then :mod:`pictrace.core.rerank`), so the
score, the signals and the transform are exactly those a search of ``a``
would give ``b`` as a result; nothing here re-implements them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pictrace.core.candidates import candidates, query_side
from pictrace.core.compact import index_row
from pictrace.core.features import ImageFeatures
from pictrace.core.partition import Partition
from pictrace.core.rerank import rerank
from pictrace.core.scoring import Match, Query, matched_points

# Enough lines to draw without burying the two images; the count is always exact.
MAX_PAIRS = 200


@dataclass(frozen=True)
class Comparison:
    """How similar ``b`` is to the query ``a``, with their matched keypoints."""

    match: Match
    pairs: list[list[float]]  # [ax, ay, bx, by], fractions of each image's size, at most MAX_PAIRS
    pair_count: int  # every matched pair, shown or not
    mirrored: bool  # the pairs use a's mirror image's keypoints

    def to_dict(self) -> dict:
        return {
            "score": round(self.match.score, 6),
            "scores": self.match.rounded_scores(),
            "transform": self.match.transform,
            "keypoints": {
                "count": self.pair_count,
                "shown": len(self.pairs),
                "mirrored": self.mirrored,
                "pairs": self.pairs,
            },
        }


def compare(a: Query, b: ImageFeatures, *, ranking: str = "default", max_pairs: int = MAX_PAIRS) -> Comparison:
    """Score ``b`` as a search for ``a`` would, and match their keypoints.

    ``transform`` is the edit that turns ``b`` into ``a``.  When there are
    more than ``max_pairs`` matched pairs, an evenly spaced subset is kept
    (the order follows ``a``'s keypoints, so the subset spreads over it).
    """
    shortlist = candidates(query_side(a), Partition.build([index_row(b)]), per_signal=1)
    found, _ = rerank(a, shortlist, {b.sha256: b}, k=1, ranking=ranking)
    pairs, mirrored = matched_points(a.features, b)
    return Comparison(found[0], spread(pairs, max_pairs), len(pairs), mirrored)


def spread(items: list, limit: int) -> list:
    """At most ``limit`` of ``items``, evenly spaced, first one kept, order kept."""
    n = len(items)
    if n <= limit:
        return list(items)
    return [items[i * n // limit] for i in range(max(limit, 0))]
