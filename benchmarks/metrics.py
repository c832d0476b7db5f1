"""Retrieval metrics over a set of answered queries.

Each query has one original in the catalog. Where the catalog holds the same
picture at several resolutions or crops (the Sway and Elephants wallpapers),
any of them counts as the original; ``strict`` metrics accept only the exact
source image. With one relevant item, average precision equals the
reciprocal rank, so mAP@5 is the mean reciprocal rank within the top 5
(0 when the original is not returned).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import mean

K = 5


@dataclass
class Answer:
    """One query's outcome."""

    family: str
    source: str
    hits: list[str]  # catalog names, best first
    top_score: float
    rank: int  # 1-based rank of the first relevant hit, 0 if not in the top K
    strict_rank: int  # same, counting only the exact source image
    seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def first_rank(hits: list[str], relevant: set[str], k: int = K) -> int:
    """1-based position of the first relevant name in ``hits[:k]``; 0 if absent."""
    for i, name in enumerate(hits[:k], 1):
        if name in relevant:
            return i
    return 0


def make_answer(family: str, source: str, hits: list[str], top_score: float, relevant: set[str],
                seconds: float = 0.0, error: str = "") -> Answer:
    """Score one query's hit list against its relevant set."""
    return Answer(family, source, hits, top_score, first_rank(hits, relevant), first_rank(hits, {source}),
                  seconds, error)


def summary(answers: list[Answer]) -> dict[str, float]:
    """recall@1, recall@5, mAP@5 (= MRR@5) and strict recall@1 of a group of answers."""
    if not answers:
        return {"n": 0}
    return {
        "n": len(answers),
        "recall@1": mean(a.rank == 1 for a in answers),
        "recall@5": mean(a.rank > 0 for a in answers),
        "map@5": mean(1.0 / a.rank if a.rank else 0.0 for a in answers),
        "strict_recall@1": mean(a.strict_rank == 1 for a in answers),
    }


def by_family(answers: list[Answer]) -> dict[str, dict[str, float]]:
    """:func:`summary` per family plus an ``overall`` entry."""
    families: dict[str, list[Answer]] = {}
    for a in answers:
        families.setdefault(a.family, []).append(a)
    out = {f: summary(v) for f, v in families.items()}
    out["overall"] = summary(answers)
    return out


def restrict(answers: list[Answer], keys: set[tuple[str, str]]) -> list[Answer]:
    """Answers whose (family, source) is in ``keys`` (to compare on the same queries)."""
    return [a for a in answers if (a.family, a.source) in keys]
