"""Shards: the index part of many images' features in one file.

A shard is a NumPy ``.npz`` archive (loaded with ``allow_pickle=False``, so
reading one never runs code) holding, row-aligned:

* ``ids``   - sha256 hex of each image (``<U64``)
* ``gist``  - (n, 1024) float16 layout vectors
* ``chist`` - (n, 512) float16 colour histograms
* ``words`` / ``word_offsets`` - every row's visual words, concatenated
  (uint32), and where each row's run starts (n + 1 int64)
* ``header``- JSON: format name, version, and one metadata object per row

The detail features of an image live elsewhere (one file per image) and are
read only for the candidates a shard's coarse scores put on the shortlist.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from pictrace.core.features import CHIST_BINS, GIST_SIDE, ImageFeatures, _header, _load_npz, check_words
from pictrace.errors import CorruptShard

SHARD_FORMAT = "pictrace-shard"
SHARD_VERSION = 2

Row = tuple[str, np.ndarray, np.ndarray, np.ndarray, dict]  # id, gist, chist, words, meta


@dataclass(frozen=True, eq=False)
class Shard:
    """Index features of a batch of images, ready for bulk scoring."""

    ids: np.ndarray  # (n,) <U64
    gist: np.ndarray  # (n, 1024) float16
    chist: np.ndarray  # (n, 512) float16
    words: np.ndarray  # (total,) uint32, row i's are words[word_offsets[i]:word_offsets[i + 1]]
    word_offsets: np.ndarray  # (n + 1,) int64
    metas: tuple[dict, ...]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, items: Iterable[tuple[ImageFeatures, dict]]) -> "Shard":
        """Make a shard from ``(features, metadata)`` pairs; later duplicates of an id are dropped."""
        return cls.from_rows((f.sha256, f.gist, f.chist, f.words, meta) for f, meta in items)

    @classmethod
    def concat(cls, shards: Sequence["Shard"]) -> "Shard":
        """Join shards, keeping the first row of any id present twice."""
        rows = []
        for shard in shards:
            rows.extend(shard.rows())
        return cls.from_rows(rows)

    def rows(self) -> list[Row]:
        o = self.word_offsets
        return [
            (str(i), g, c, self.words[o[r] : o[r + 1]], m)
            for r, (i, g, c, m) in enumerate(zip(self.ids, self.gist, self.chist, self.metas))
        ]

    @classmethod
    def from_rows(cls, rows: Iterable[Row]) -> "Shard":
        seen: set[str] = set()
        kept = []
        for row in rows:
            if row[0] not in seen:
                seen.add(row[0])
                kept.append(row)
        return cls(
            ids=np.array([r[0] for r in kept], dtype="<U64").reshape(-1),
            gist=np.array([r[1] for r in kept], dtype=np.float16).reshape(-1, GIST_SIDE * GIST_SIDE),
            chist=np.array([r[2] for r in kept], dtype=np.float16).reshape(-1, CHIST_BINS**3),
            words=np.concatenate([np.zeros(0, np.uint32)] + [np.asarray(r[3], np.uint32) for r in kept]),
            word_offsets=np.cumsum([0] + [len(r[3]) for r in kept]).astype(np.int64),
            metas=tuple(dict(r[4]) for r in kept),
        )

    def without(self, ids: Iterable[str]) -> "Shard":
        """A copy without the given ids (deleted images)."""
        drop = set(ids)
        return Shard.from_rows(r for r in self.rows() if r[0] not in drop)

    def gist32(self) -> np.ndarray:
        """``gist`` as float32, converted once per loaded shard."""
        if "gist" not in self._cache:
            self._cache["gist"] = self.gist.astype(np.float32)
        return self._cache["gist"]

    def chist32(self) -> np.ndarray:
        if "chist" not in self._cache:
            self._cache["chist"] = self.chist.astype(np.float32)
        return self._cache["chist"]

    def postings(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (word, row) pair sorted by word: the shard's inverted index, built once."""
        if "postings" not in self._cache:
            rows = np.repeat(np.arange(len(self.ids), dtype=np.int32), np.diff(self.word_offsets))
            order = np.argsort(self.words, kind="stable")
            self._cache["postings"] = (self.words[order], rows[order])
        return self._cache["postings"]

    def word_counts(self) -> np.ndarray:
        """Number of visual words of each row."""
        return np.diff(self.word_offsets)

    def to_bytes(self) -> bytes:
        header = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "metas": list(self.metas)}
        buf = io.BytesIO()
        np.savez(
            buf,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            ids=self.ids,
            gist=self.gist,
            chist=self.chist,
            words=self.words,
            word_offsets=self.word_offsets,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Shard":
        """Load a shard; foreign, damaged or other-version files raise CorruptShard."""
        arrays = _load_npz(data, "shard")
        header = _header(arrays, SHARD_FORMAT, SHARD_VERSION)
        try:
            ids, gist, chist = arrays["ids"], arrays["gist"], arrays["chist"]
            words, offsets = arrays["words"], arrays["word_offsets"]
        except KeyError as exc:
            raise CorruptShard(f"shard lacks {exc.args[0]!r}") from None
        metas = header.get("metas")
        n = len(ids)
        if (
            ids.dtype.kind != "U"
            or ids.ndim != 1
            or gist.shape != (n, GIST_SIDE * GIST_SIDE)
            or gist.dtype != np.float16
            or chist.shape != (n, CHIST_BINS**3)
            or chist.dtype != np.float16
            or not isinstance(metas, list)
            or len(metas) != n
            or not all(isinstance(m, dict) for m in metas)
            or offsets.dtype != np.int64
            or offsets.shape != (n + 1,)
            or offsets[0] != 0
            or offsets[-1] != len(words)
            or (np.diff(offsets) < 0).any()
        ):
            raise CorruptShard("shard arrays are malformed or disagree in length")
        check_words(words, "shard words")
        return cls(
            ids=ids.astype("<U64"), gist=gist, chist=chist, words=words, word_offsets=offsets, metas=tuple(metas)
        )
