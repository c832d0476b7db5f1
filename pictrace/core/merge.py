"""Merging the top-k lists that independent batches return."""

from __future__ import annotations

from typing import Iterable

from pictrace.core.scoring import Match, rank


def merge_topk(batches: Iterable[Iterable[Match]], k: int) -> list[Match]:
    """The best ``k`` matches across batches.

    The same image can come back from two batches (an image packed into a
    shard while also still pending), and two ids can share one source URL;
    each is reported once, with its best score.  Ties are ordered by id so the
    result does not depend on which batch answered first.
    """
    best: dict[str, Match] = {}
    for batch in batches:
        for m in batch:
            if m.id not in best or (-m.score, m.id) < (-best[m.id].score, best[m.id].id):
                best[m.id] = m
    seen_urls: set[str] = set()
    out: list[Match] = []
    for m in rank(best.values(), len(best)):
        url = m.meta.get("image_url")
        if url:
            if url in seen_urls:
                continue
            seen_urls.add(url)
        out.append(m)
        if len(out) == k:
            break
    return out
