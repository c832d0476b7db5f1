"""PicTrace as a Python library, with no AWS involved.

>>> from pictrace.api import LocalIndex
>>> index = LocalIndex.from_folder("photos/")          # doctest: +SKIP
>>> for hit in index.search(open("query.jpg", "rb").read(), k=3):  # doctest: +SKIP
...     print(hit.meta["name"], round(hit.score, 3), hit.scores)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pictrace.core.features import ImageFeatures, extract_features
from pictrace.core.merge import merge_topk
from pictrace.core.scoring import DEFAULT_SHORTLIST, Match, Query, query_from_bytes, score_shard
from pictrace.core.shard import Shard

__all__ = ["LocalIndex", "Match", "extract_features", "prepare_query", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def prepare_query(data: bytes, *, max_pixels: int = 50_000_000) -> Query:
    """Decode a query image once and derive everything scoring needs."""
    return query_from_bytes(data, max_pixels=max_pixels)


class LocalIndex:
    """An in-memory catalog: add images, search them.

    Shards of ``shard_size`` images are scored one after the other and their
    top-k merged, exactly as the serverless fan-out does with one Lambda
    invocation per shard.
    """

    def __init__(self, shard_size: int = 5000) -> None:
        self.shard_size = shard_size
        self._details: dict[str, ImageFeatures] = {}
        self._metas: dict[str, dict] = {}
        self._shards: list[Shard] = []
        self._dirty = True

    def __len__(self) -> int:
        return len(self._details)

    def add(self, data: bytes, meta: dict | None = None) -> str:
        """Add image bytes; returns the image id (sha256 of the bytes)."""
        return self.add_features(extract_features(data), meta)

    def add_features(self, features: ImageFeatures, meta: dict | None = None) -> str:
        if features.sha256 not in self._details:
            self._details[features.sha256] = features
            self._metas[features.sha256] = dict(meta or {})
            self._dirty = True
        return features.sha256

    def remove(self, image_id: str) -> bool:
        found = self._details.pop(image_id, None) is not None
        self._metas.pop(image_id, None)
        self._dirty = found or self._dirty
        return found

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs) -> "LocalIndex":
        """Index every image file below ``folder`` (recursively); ``meta["name"]`` is its path."""
        index = cls(**kwargs)
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                index.add(path.read_bytes(), {"name": str(path)})
        return index

    def shards(self) -> list[Shard]:
        if self._dirty:
            ids = list(self._details)
            self._shards = [
                Shard.build((self._details[i], self._metas[i]) for i in ids[s : s + self.shard_size])
                for s in range(0, len(ids), self.shard_size)
            ]
            self._dirty = False
        return self._shards

    def search(
        self,
        query: bytes | Query,
        k: int = 5,
        ranking: str = "default",
        shortlist: int = DEFAULT_SHORTLIST,
        min_score: float = 0.0,
        exclude: Iterable[str] = (),
    ) -> list[Match]:
        """The ``k`` catalog images most similar to ``query``, best first.

        Matches scoring below ``min_score`` are left out (the list may be
        empty); ids in ``exclude`` are never returned.
        """
        q = prepare_query(query) if isinstance(query, (bytes, bytearray)) else query
        skip = tuple(exclude)
        batches = [
            score_shard(q, shard, self._load, k=k, ranking=ranking, shortlist=shortlist, exclude=skip)
            for shard in self.shards()
        ]
        return [m for m in merge_topk(batches, k) if m.score >= min_score]

    def similar(self, image_id: str, k: int = 5, min_score: float = 0.0, ranking: str = "default") -> list[Match]:
        """The ``k`` images most like the indexed image ``image_id``, which is not among them.

        Searches with the stored features (no bytes are kept), which lack the
        mirror image's keypoints, so a mirrored copy ranks by layout and colour
        more than by keypoints.  KeyError for an id not in the index.
        """
        query = Query(features=self._details[image_id])
        return self.search(query, k=k, ranking=ranking, min_score=min_score, exclude=[image_id])

    def _load(self, ids: Iterable[str]) -> dict[str, ImageFeatures]:
        return {i: self._details[i] for i in ids}
