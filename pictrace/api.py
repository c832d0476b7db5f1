"""PicTrace as a Python library, with no AWS involved.

>>> from pictrace.api import LocalIndex
>>> index = LocalIndex.from_folder("photos/")          # doctest: +SKIP
>>> for hit in index.search(open("query.jpg", "rb").read(), k=3):  # doctest: +SKIP
...     print(hit.meta["name"], round(hit.score, 3), hit.scores)
>>> for hit in index.search(open("query.jpg", "rb").read(), mode="similar"):  # doctest: +SKIP
...     print(hit.meta["name"], round(hit.semantic, 3))   # the same kind of thing, not a copy
>>> index.save("photos.index")                           # doctest: +SKIP
>>> index = LocalIndex.load("photos.index")              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from pictrace.core import compact
from pictrace.core.candidates import DEFAULT_PER_SIGNAL, CandidateQuery, candidates, query_side
from pictrace.core.candidates import shortlist as merge_shortlist
from pictrace.core.detail_file import DetailFile
from pictrace.core.features import ImageFeatures, extract_features
from pictrace.core.filters import Filter, check_meta, meta_tags
from pictrace.core.parallel import parallel_map
from pictrace.core.partition import MAX_ROWS, Partition
from pictrace.core.rerank import Work, rerank
from pictrace.core.scoring import Match, Query, query_from_bytes
from pictrace.errors import CorruptShard, ModelUnavailable

__all__ = ["LocalIndex", "Match", "extract_features", "prepare_query", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
INDEX_FORMAT = "pictrace-local-index"
INDEX_VERSION = 1
_DETAILS = "details.bin"
_TOC = "index.json"


def prepare_query(data: bytes, *, max_pixels: int = 50_000_000) -> Query:
    """Decode a query image once and derive everything scoring needs."""
    return query_from_bytes(data, max_pixels=max_pixels)


def candidate_query(query: Query) -> CandidateQuery:
    """The phase-1 side of a query."""
    return query_side(query)


class LocalIndex:
    """A catalog on this machine: add images, search them, save and load it.

    Searches run the same two phases as the serverless stack: every image's
    compact row (under 1 KB, held in memory, in partitions of at most
    ``partition_rows``) is scored by cheap signals, then the global
    shortlist is reranked with the three signals.  Detail features (about
    30-60 KB per image) stay on disk and are read for the shortlist only:
    in a temporary file until :meth:`save`, then in the saved folder.
    """

    def __init__(self, partition_rows: int = MAX_ROWS) -> None:
        if not 1 <= partition_rows <= MAX_ROWS:
            raise ValueError(f"partition_rows must be from 1 to {MAX_ROWS}")
        self.partition_rows = partition_rows
        self._rows: dict[str, compact.IndexRow] = {}
        self._metas: dict[str, dict] = {}
        self._spill = tempfile.TemporaryDirectory(prefix="pictrace-index-")
        self._details = DetailFile(Path(self._spill.name) / _DETAILS)
        self._partitions: list[Partition] = []
        self._dirty = True
        self.last_work: Work | None = None
        self.last_filter_dropped: int = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._rows

    def add(self, data: bytes, meta: dict | None = None) -> str:
        """Add image bytes; returns the image id (sha256 of the bytes).

        ``meta`` is bounded as the API bounds it (:func:`pictrace.core.filters.check_meta`,
        InvalidMeta otherwise); its top-level strings and lists of strings
        are what :meth:`search`'s ``filter`` selects by.
        """
        return self.add_features(extract_features(data), meta)

    def add_features(self, features: ImageFeatures, meta: dict | None = None) -> str:
        if features.sha256 not in self._rows:
            meta = check_meta(dict(meta or {}))
            self._details.append(features)
            self._rows[features.sha256] = compact.index_row(features, tags=meta_tags(meta))
            self._metas[features.sha256] = meta
            self._dirty = True
        return features.sha256

    def set_meta(self, image_id: str, meta: dict) -> None:
        """Replace an indexed image's metadata, and the tags filters select it by (KeyError if absent)."""
        if image_id not in self._rows:
            raise KeyError(image_id)
        meta = check_meta(dict(meta))
        # The row again from the stored features: its tags are the meta's and the labels'.
        self._rows[image_id] = compact.index_row(self._details.get(image_id), tags=meta_tags(meta))
        self._metas[image_id] = meta
        self._dirty = True

    def remove(self, image_id: str) -> bool:
        found = self._rows.pop(image_id, None) is not None
        self._metas.pop(image_id, None)
        self._details.discard(image_id)
        self._dirty = found or self._dirty
        return found

    def meta(self, image_id: str) -> dict:
        """The metadata an image was added with (KeyError if absent)."""
        return dict(self._metas[image_id])

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs) -> "LocalIndex":
        """Index every image file below ``folder`` (recursively); ``meta["name"]`` is its path."""
        index = cls(**kwargs)
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                index.add(path.read_bytes(), {"name": str(path)})
        return index

    def partitions(self) -> list[Partition]:
        """The phase-1 partitions, rebuilt after adds and removals."""
        if self._dirty:
            rows = list(self._rows.values())
            size = self.partition_rows
            self._partitions = [Partition.build(rows[s : s + size]) for s in range(0, len(rows), size)]
            self._dirty = False
        return self._partitions

    def search(
        self,
        query: bytes | Query,
        k: int = 5,
        ranking: str = "default",
        shortlist: int = DEFAULT_PER_SIGNAL,
        min_score: float = 0.0,
        exclude: Iterable[str] = (),
        filter: Filter | dict | None = None,
        mode: str = "default",
    ) -> list[Match]:
        """The ``k`` catalog images most similar to ``query``, best first.

        ``shortlist`` is how many candidates each cheap signal sends to the
        rerank.  Matches scoring below ``min_score`` are left out (the list
        may be empty); ids in ``exclude`` are never returned.  ``filter``
        (``{"field": "value" or ["any", "of"]}``, see
        :class:`pictrace.core.filters.Filter`) makes only images whose meta
        matches it candidates, so up to ``shortlist`` matching images are
        reranked however many better ones do not match.  What the rerank
        did is left in :attr:`last_work`, and in :attr:`last_filter_dropped`
        how many shortlisted candidates the exact check of ``filter`` on
        their meta dropped (phase 1 selects by 32-bit hashes of the values,
        which may collide), as the HTTP answer's ``filter_dropped``.
        ``mode="similar"`` ranks by looks-like similarity (``Match.semantic``,
        also its ``score``) and raises ModelUnavailable without the
        embedding model; every match reports ``semantic`` either way.
        """
        wanted = filter if isinstance(filter, Filter) else Filter.parse(filter)
        q = prepare_query(query) if isinstance(query, (bytes, bytearray)) else query
        if mode == "similar" and q.features.embedding is None:
            raise ModelUnavailable("mode='similar' needs the embedding model: python -m pictrace.model.convert")
        cq = candidate_query(q)
        skip = tuple(exclude)
        tags = wanted.tokens() if wanted else ()
        found = [c for p in self.partitions() for c in candidates(cq, p, per_signal=shortlist, mode=mode, exclude=skip, tags=tags)]
        short = merge_shortlist(found, shortlist, mode)
        details = self._details.get_many(c.id for c in short)
        checked = short
        if wanted:  # tokens are hashes: the meta and the stored labels decide, not the tags
            checked = [c for c in short if c.id in details and wanted.matches(self._filterable(c.id, details[c.id]))]
        self.last_filter_dropped = len(short) - len(checked)
        short = checked
        matches, self.last_work = rerank(q, short, details, k=k, ranking=ranking, mode=mode)
        return [dataclasses.replace(m, meta=dict(self._metas.get(m.id, {}))) for m in matches if m.score >= min_score]

    def _filterable(self, image_id: str, features: ImageFeatures) -> dict:
        return compact.filterable(self._metas.get(image_id, {}), features.labels)

    def labels(self, image_id: str) -> list[tuple[str, float]]:
        """The image's top ImageNet labels with probabilities, best first ([] without the model; KeyError if absent)."""
        if image_id not in self._rows:
            raise KeyError(image_id)
        return list(self._details.get(image_id).labels)

    def similar(
        self,
        image_id: str,
        k: int = 5,
        min_score: float = 0.0,
        ranking: str = "default",
        shortlist: int = DEFAULT_PER_SIGNAL,
        filter: Filter | dict | None = None,
        mode: str = "default",
    ) -> list[Match]:
        """The ``k`` images most like the indexed image ``image_id``, which is not among them.

        Searches with the stored features (no bytes are kept), which lack the
        mirror image's keypoints, so a mirrored copy ranks by layout and colour
        more than by keypoints.  KeyError for an id not in the index.
        """
        if image_id not in self._rows:
            raise KeyError(image_id)
        query = Query(features=self._details.get(image_id))
        return self.search(
            query, k=k, ranking=ranking, shortlist=shortlist, min_score=min_score, exclude=[image_id], filter=filter,
            mode=mode,
        )

    def save(self, directory: str | Path) -> Path:
        """Write the index to ``directory`` (created if needed); :meth:`load` reads it back.

        The folder holds ``index.json`` (ids, metadata, where each image's
        details are), ``details.bin`` and the phase-1 partitions.  The
        table of contents is written last, by rename, so an interrupted save
        never leaves a folder that loads as a different index.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        details_tmp = folder / (_DETAILS + ".tmp")
        toc = self._details.copy_to(details_tmp)
        parts = []
        for i, part in enumerate(self.partitions()):
            name = f"partition-{i:05d}.npz"
            (folder / name).write_bytes(part.to_bytes())
            parts.append(name)
        os.replace(details_tmp, folder / _DETAILS)
        body = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "partition_rows": self.partition_rows,
            "partitions": parts,
            "images": [{"id": i, "meta": self._metas[i], "details": list(toc[i])} for i in self._rows],
        }
        tmp = folder / (_TOC + ".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, folder / _TOC)
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> "LocalIndex":
        """An index saved by :meth:`save`; detail features stay in that folder, read on demand.

        Raises CorruptShard for a folder that is not a saved index, or one of
        another version.  Later adds go to a temporary file; the folder is
        never changed except by another :meth:`save`.
        """
        folder = Path(directory)
        try:
            body = json.loads((folder / _TOC).read_text())
        except (OSError, ValueError) as exc:
            raise CorruptShard(f"{folder} is not a saved PicTrace index: {exc}") from None
        if not isinstance(body, dict) or body.get("format") != INDEX_FORMAT:
            raise CorruptShard(f"{folder} is not a saved PicTrace index")
        if body.get("version") != INDEX_VERSION:
            raise CorruptShard(f"saved index version {body.get('version')!r} is not supported (expected {INDEX_VERSION})")
        try:
            index = cls(int(body["partition_rows"]))
            entries = {str(e["id"]): (int(e["details"][0]), int(e["details"][1])) for e in body["images"]}
            metas = {str(e["id"]): dict(e["meta"]) for e in body["images"]}
            parts = [Partition.from_bytes((folder / str(name)).read_bytes()) for name in body["partitions"]]
        except (KeyError, TypeError, ValueError, IndexError, OSError) as exc:
            raise CorruptShard(f"{folder}: saved index is damaged: {exc}") from None
        saved = DetailFile(folder / _DETAILS, entries, writable=False)
        rows = {r.sha256: r for p in parts for r in p.rows()}
        if set(rows) != set(entries):
            raise CorruptShard(f"{folder}: partitions and table of contents disagree")
        index._details = _Layered(saved, index._details)
        index._rows = {i: rows[i] for i in entries}
        index._metas = metas
        index._partitions, index._dirty = parts, False
        return index


class _Layered:
    """A read-only saved detail file with a writable one on top (adds after a load)."""

    def __init__(self, saved: DetailFile, spill: DetailFile) -> None:
        self.saved, self.spill = saved, spill

    def append(self, features: ImageFeatures) -> None:
        self.spill.append(features)

    def discard(self, sha: str) -> bool:
        return self.spill.discard(sha) or self.saved.discard(sha)

    def get(self, sha: str) -> ImageFeatures:
        return self.spill.get(sha) if sha in self.spill else self.saved.get(sha)

    def get_many(self, ids: Iterable[str]) -> dict[str, ImageFeatures]:
        present = [sha for sha in ids if sha in self.spill or sha in self.saved]
        return dict(zip(present, parallel_map(self.get, present)))

    def copy_to(self, path: str | Path) -> dict[str, tuple[int, int]]:
        toc = self.saved.copy_to(path)
        with open(path, "ab") as f:
            base = f.tell()
            for sha, (offset, length) in self.spill.entries.items():
                toc[sha] = (base, length)
                f.write(self.spill.raw(sha))
                base += length
        return toc
