"""Index partitions: the compact rows of many images, what phase 1 of a search reads.

A partition is a :mod:`pictrace.core.arrays` container (plain numeric
arrays, never unpickled) holding, row-aligned:

* ``ids``    - (n, 32) uint8, the sha256 of each image
* ``layout`` - (n, 256) int8, 16x16 layouts (:func:`pictrace.core.compact.layout_vector`)
* ``colour`` - (n, 64) uint8, 4x4x4 colour histograms of square roots
* ``semantic`` - (n, 96) int8, looks-like codes (zeros: none)
* ``word_low`` / ``word_high`` / ``word_counts`` / ``word_rows`` - the
  inverted index: every stored visual word in sorted order as its low 16
  bits (uint16), the distinct values of the high bits with how many words
  have each (uint16, uint32: at most 1,024 of them), and the row holding
  each word (uint16): 4 bytes a word
* ``tags`` / ``tag_rows`` - the same for filter tokens (uint32, uint16)
* ``header`` - JSON: format name and version

A partition holds at most :data:`MAX_ROWS` rows, so a row number fits in two
bytes and a cold read stays bounded (at most 1 KB per row with up to ten
filter tags: 64 MB at most).
The detail features of an image live elsewhere, one object per image, and
are read in phase 2 for the candidates only.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from pictrace.core import arrays as container
from pictrace.core import compact
from pictrace.core.compact import COLOUR_BINS, LAYOUT_SIDE, SEMANTIC_DIMS, WORD_BITS, WORD_TABLES, IndexRow
from pictrace.errors import CorruptShard, OutdatedIndex

PARTITION_FORMAT = "pictrace-partition"
PARTITION_VERSION = 4
MAX_ROWS = 65_536
_LAYOUT = LAYOUT_SIDE * LAYOUT_SIDE
_COLOUR = COLOUR_BINS**3
_LOW_BITS = 16
_BUCKETS = (WORD_TABLES << WORD_BITS) >> _LOW_BITS


@dataclass(frozen=True, eq=False)
class Partition:
    """Compact index rows of up to MAX_ROWS images, ready for bulk phase-1 scoring."""

    ids: np.ndarray  # (n, 32) uint8
    layout: np.ndarray  # (n, 256) int8
    colour: np.ndarray  # (n, 64) uint8
    words: np.ndarray  # (p,) uint32, sorted
    word_rows: np.ndarray  # (p,) uint16, the row of each word
    semantic: np.ndarray  # (n, SEMANTIC_DIMS) int8
    tags: np.ndarray  # (t,) uint32, sorted
    tag_rows: np.ndarray  # (t,) uint16, the row of each tag
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Bytes of the partition's arrays (what a warm container keeps)."""
        return sum(a.nbytes for a in self._arrays().values())

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "ids": self.ids, "layout": self.layout, "colour": self.colour, "semantic": self.semantic,
            "words": self.words, "word_rows": self.word_rows, "tags": self.tags, "tag_rows": self.tag_rows,
        }

    @classmethod
    def build(cls, rows: Iterable[IndexRow]) -> "Partition":
        """A partition of ``rows``; later duplicates of an id are dropped."""
        seen: set[str] = set()
        kept: list[IndexRow] = []
        for row in rows:
            if row.sha256 not in seen:
                seen.add(row.sha256)
                kept.append(row)
        if len(kept) > MAX_ROWS:
            raise ValueError(f"a partition holds at most {MAX_ROWS} rows, got {len(kept)}")
        words, word_rows = _inverted([r.words for r in kept], np.uint32)
        tags, tag_rows = _inverted([r.tags for r in kept], np.uint32)
        return cls(
            ids=np.array([bytes.fromhex(r.sha256) for r in kept], dtype="S32").view(np.uint8).reshape(-1, 32),
            layout=np.array([r.layout for r in kept], dtype=np.int8).reshape(-1, _LAYOUT),
            colour=np.array([r.colour for r in kept], dtype=np.uint8).reshape(-1, _COLOUR),
            words=words,
            word_rows=word_rows,
            semantic=np.array([r.semantic for r in kept], dtype=np.int8).reshape(-1, SEMANTIC_DIMS),
            tags=tags,
            tag_rows=tag_rows,
        )

    @classmethod
    def concat(cls, parts: Sequence["Partition"]) -> "Partition":
        """Join partitions, keeping the first row of any id present twice."""
        return cls.build(row for part in parts for row in part.rows())

    def id(self, row: int) -> str:
        return self.ids[row].tobytes().hex()

    def id_list(self) -> list[str]:
        if "ids" not in self._cache:
            self._cache["ids"] = [bytes(r).hex() for r in self.ids]
        return self._cache["ids"]

    def rows(self) -> list[IndexRow]:
        """The partition's rows again (words and tags per row in sorted order)."""
        words = _per_row(self.words, self.word_rows, len(self))
        tags = _per_row(self.tags, self.tag_rows, len(self))
        return [
            IndexRow(
                sha256=sha,
                layout=self.layout[r],
                colour=self.colour[r],
                words=words[r],
                semantic=self.semantic[r],
                tags=tags[r],
            )
            for r, sha in enumerate(self.id_list())
        ]

    def without(self, ids: Iterable[str]) -> "Partition":
        """A copy without the given ids (deleted images)."""
        drop = set(ids)
        return Partition.build(r for r in self.rows() if r.sha256 not in drop)

    def take(self, rows: np.ndarray) -> "Partition":
        """Rows ``rows`` (sorted, distinct row numbers) as a partition of their own.

        What phase 1 scores when a filter leaves few rows: masking the
        inverted indexes is one pass over them, cheaper than scoring every row.
        """
        rows = np.asarray(rows, dtype=np.int64)
        keep = np.zeros(len(self), dtype=bool)
        keep[rows] = True
        renumber = np.zeros(len(self), dtype=np.int64)
        renumber[rows] = np.arange(len(rows))
        words, tags = keep[self.word_rows], keep[self.tag_rows]
        return Partition(
            ids=self.ids[rows],
            layout=self.layout[rows],
            colour=self.colour[rows],
            words=self.words[words],
            word_rows=renumber[self.word_rows[words]].astype(np.uint16),
            semantic=self.semantic[rows],
            tags=self.tags[tags],
            tag_rows=renumber[self.tag_rows[tags]].astype(np.uint16),
        )

    def unit_layouts(self) -> np.ndarray:
        """The layouts as float32 unit rows, made once per loaded partition.

        A warm container keeps them (1 KB a row) so that scoring a
        partition is one matrix product; the file keeps the int8 form.
        """
        if "layouts" not in self._cache:
            self._cache["layouts"] = _unit(self.layout)
        return self._cache["layouts"]

    def crop_window_norms(self) -> np.ndarray:
        """(n, P) deviation of every unit layout inside each crop window, made once per loaded partition.

        Per row a few hundred bytes, kept by a warm container beside the
        unit layouts so the crop signal costs one matrix product a search.
        """
        if "windows" not in self._cache:
            self._cache["windows"] = compact.crop_window_norms(self.unit_layouts())
        return self._cache["windows"]

    def unit_colours(self) -> np.ndarray:
        """The colour histograms as float32 unit rows, made once per loaded partition."""
        if "colours" not in self._cache:
            self._cache["colours"] = _unit(self.colour)
        return self._cache["colours"]

    def unit_semantic(self) -> np.ndarray:
        """The looks-like codes as float32 unit rows (rows without codes stay zero), made once per loaded partition."""
        if "semantic" not in self._cache:
            self._cache["semantic"] = _unit(self.semantic)
        return self._cache["semantic"]

    def to_bytes(self, nonce: str = "") -> bytes:
        """The partition file; a ``nonce`` (kept in the header, ignored on reading) makes equal rows distinct objects."""
        header = {"format": PARTITION_FORMAT, "version": PARTITION_VERSION}
        if nonce:
            header["nonce"] = nonce
        # Sorted words share their high bits in long runs: a count per run
        # and the low half of each word store them in 2 bytes, not 4.
        high, counts = np.unique(self.words >> np.uint32(_LOW_BITS), return_counts=True)
        return container.pack(
            {
                "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                "ids": self.ids,
                "layout": self.layout,
                "colour": self.colour,
                "semantic": self.semantic,
                "word_low": (self.words & np.uint32(0xFFFF)).astype(np.uint16),
                "word_high": high.astype(np.uint16),
                "word_counts": counts.astype(np.uint32),
                "word_rows": self.word_rows,
                "tags": self.tags,
                "tag_rows": self.tag_rows,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "Partition":
        """Load a partition; foreign, damaged or other-version files raise CorruptShard."""
        arrays = _load(data)
        _check_header(arrays)
        try:
            ids, lay, col = arrays["ids"], arrays["layout"], arrays["colour"]
            low, high, counts, rows = arrays["word_low"], arrays["word_high"], arrays["word_counts"], arrays["word_rows"]
            sem, tags, tag_rows = arrays["semantic"], arrays["tags"], arrays["tag_rows"]
        except KeyError as exc:
            raise CorruptShard(f"partition lacks {exc.args[0]!r}") from None
        n = len(ids)
        if (
            low.dtype != np.uint16
            or low.ndim != 1
            or high.dtype != np.uint16
            or high.ndim != 1
            or counts.dtype != np.uint32
            or counts.shape != high.shape
            or int(counts.sum(dtype=np.int64)) != len(low)
            or (len(high) and int(high[-1]) >= _BUCKETS)
            or (np.diff(high.astype(np.int64)) <= 0).any()
        ):
            raise CorruptShard("partition words are malformed")
        words = (np.repeat(high.astype(np.uint32), counts) << np.uint32(_LOW_BITS)) | low
        if (
            ids.dtype != np.uint8
            or ids.shape != (n, 32)
            or n > MAX_ROWS
            or lay.dtype != np.int8
            or lay.shape != (n, _LAYOUT)
            or col.dtype != np.uint8
            or col.shape != (n, _COLOUR)
            or words.dtype != np.uint32
            or rows.dtype != np.uint16
            or words.ndim != 1
            or rows.shape != words.shape
            or sem.dtype != np.int8
            or sem.shape != (n, SEMANTIC_DIMS)
            or tags.dtype != np.uint32
            or tag_rows.dtype != np.uint16
            or tags.ndim != 1
            or tag_rows.shape != tags.shape
        ):
            raise CorruptShard("partition arrays are malformed or disagree in length")
        if len(words) and (
            int(words.max()) >= WORD_TABLES << WORD_BITS or int(rows.max()) >= n or (np.diff(words.astype(np.int64)) < 0).any()
        ):
            raise CorruptShard("partition words are out of range or unsorted")
        if len(tags) and (int(tag_rows.max()) >= n or (tags[1:] < tags[:-1]).any()):
            raise CorruptShard("partition tags are out of range or unsorted")
        return cls(
            ids=ids, layout=lay, colour=col, words=words, word_rows=rows, semantic=sem, tags=tags, tag_rows=tag_rows
        )

    def rows_tagged(self, token: int) -> np.ndarray:
        """The rows holding filter ``token``, as a sorted int64 array."""
        key = np.uint32(token)
        lo, hi = np.searchsorted(self.tags, key, side="left"), np.searchsorted(self.tags, key, side="right")
        return np.sort(self.tag_rows[lo:hi].astype(np.int64))


def _inverted(per_row: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Every row's values, sorted, and the row of each (an inverted index)."""
    values = np.concatenate([np.zeros(0, dtype)] + [v.astype(dtype) for v in per_row])
    owners = np.repeat(np.arange(len(per_row), dtype=np.uint16), [len(v) for v in per_row])
    order = np.argsort(values, kind="stable")
    return values[order], owners[order]


def _per_row(values: np.ndarray, owners: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(owners, kind="stable")
    bounds = np.searchsorted(owners[order], np.arange(n + 1))
    return [np.sort(values[order[bounds[r] : bounds[r + 1]]]) for r in range(n)]


def _unit(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _load(data: bytes) -> dict[str, np.ndarray]:
    if container.is_container(data):
        return container.unpack(data, "partition")
    try:  # an .npz: partitions and shards of earlier versions
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as exc:  # numpy raises many types for foreign bytes
        raise CorruptShard(f"not a PicTrace partition file: {type(exc).__name__}") from None


def _check_header(arrays: dict[str, np.ndarray]) -> None:
    raw = arrays.get("header")
    if raw is None or raw.dtype != np.uint8:
        raise CorruptShard("not a PicTrace partition file: no header")
    try:
        header = json.loads(raw.tobytes())
    except ValueError:
        raise CorruptShard("unreadable partition header") from None
    if not isinstance(header, dict):
        raise CorruptShard("unreadable partition header")
    if header.get("format") == "pictrace-shard":
        raise OutdatedIndex(
            f"index shard version {header.get('version')!r} predates partitions (version {PARTITION_VERSION}): "
            "run `pictrace reindex` to rebuild the index"
        )
    if header.get("format") != PARTITION_FORMAT:
        raise CorruptShard("not a PicTrace partition file")
    if isinstance(header.get("version"), int) and header["version"] < PARTITION_VERSION:
        raise OutdatedIndex(
            f"index partition version {header['version']} predates this version ({PARTITION_VERSION}): "
            "run `pictrace reindex` to rebuild the index"
        )
    if header.get("version") != PARTITION_VERSION:
        raise CorruptShard(
            f"partition version {header.get('version')!r} is not supported (expected {PARTITION_VERSION})"
        )
