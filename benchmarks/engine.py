"""The benchmark's only contact with PicTrace's Python API.

Features travel between processes and the on-disk cache as the bytes of
``ImageFeatures.to_bytes()``; query features are the query-side kind (with
mirrored ORB descriptors), which is what ``LocalIndex.search`` derives from
query bytes.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pictrace
from pictrace.api import LocalIndex, extract_features, prepare_query
from pictrace.core.features import ImageFeatures
from pictrace.core.scoring import Query

RANKINGS = ("default", "seed")


@dataclass(frozen=True)
class Hit:
    """One ranked result as the benchmark records it."""

    id: str
    score: float
    scores: dict[str, float]


# What makes the cached features: catalog-side extraction and the query side.
_EXTRACTION_ROOTS = ("core/features.py", "core/scoring.py")


def fingerprint() -> str:
    """Hash of the source that extracts features: the feature cache key.

    That is the extraction modules and every ``pictrace`` module they
    import, transitively; a change to search (phase 1, the rerank) keeps
    the cache.
    """
    root = Path(pictrace.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(_extraction_sources(root)):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _extraction_sources(root: Path) -> set[Path]:
    todo = [root / r for r in _EXTRACTION_ROOTS]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pictrace"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("pictrace")]
            for name in names:
                rel = Path(*name.split(".")[1:])
                todo += [root / rel.with_suffix(".py"), root / rel / "__init__.py"]
    return seen


def catalog_blob(data: bytes) -> bytes:
    """Catalog-side features of image bytes, serialised."""
    return extract_features(data).to_bytes()


def query_blob(data: bytes) -> bytes:
    """Query-side features of image bytes (what a search derives first), serialised."""
    return prepare_query(data).features.to_bytes()


def load_features(blob: bytes) -> ImageFeatures:
    """Inverse of :func:`catalog_blob`."""
    return ImageFeatures.from_bytes(blob)


def load_query(blob: bytes) -> Query:
    """A ready-to-search query from :func:`query_blob` output."""
    return Query(features=ImageFeatures.from_bytes(blob))


def stored_sizes(features: ImageFeatures) -> tuple[int, int]:
    """(index-part bytes, detail-part bytes) of one catalog image."""
    return features.nbytes_index, features.nbytes_detail


def build_index(blobs: Iterable[bytes], names: Iterable[str]) -> tuple[LocalIndex, dict[str, str]]:
    """A LocalIndex of the given catalog features; also maps returned id -> benchmark name."""
    index = LocalIndex()
    id_to_name = {}
    for blob, name in zip(blobs, names):
        id_to_name[index.add_features(load_features(blob), {"name": name})] = name
    return index, id_to_name


def search(index: LocalIndex, query: bytes | Query, k: int, ranking: str) -> list[Hit]:
    """Top-k hits for a query (bytes or prepared)."""
    return [Hit(m.id, float(m.score), dict(m.scores)) for m in index.search(query, k=k, ranking=ranking)]
