"""Detail features on disk: one append-only file of serialised features, read on demand.

Phase 2 reads the detail features of a few dozen candidates per search, so
an index keeps only their offsets in memory and reads the bytes with
``os.pread`` when asked.  A file is only ever appended to; a removed image
just loses its entry, and :meth:`DetailFile.copy_to` writes a compact copy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from pictrace.core.features import ImageFeatures
from pictrace.errors import CorruptShard


class DetailFile:
    """Serialised :class:`ImageFeatures` of many images in one file, with an in-memory table of contents."""

    def __init__(self, path: str | Path, entries: Mapping[str, tuple[int, int]] | None = None, *, writable: bool = True):
        self.path = Path(path)
        self._entries: dict[str, tuple[int, int]] = dict(entries or {})
        self._lock = threading.Lock()
        flags = (os.O_RDWR | os.O_CREAT | os.O_APPEND) if writable else os.O_RDONLY
        self._fd = os.open(self.path, flags, 0o644)
        self._size = os.fstat(self._fd).st_size
        for sha, (offset, length) in self._entries.items():
            if offset < 0 or length <= 0 or offset + length > self._size:
                raise CorruptShard(f"{self.path.name}: the entry of {sha[:12]} lies outside the file")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sha: str) -> bool:
        return sha in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    @property
    def entries(self) -> dict[str, tuple[int, int]]:
        """sha256 -> (offset, length) of every live entry."""
        return dict(self._entries)

    def append(self, features: ImageFeatures) -> None:
        data = features.to_bytes()
        with self._lock:
            offset = self._size
            os.write(self._fd, data)
            self._size += len(data)
            self._entries[features.sha256] = (offset, len(data))

    def discard(self, sha: str) -> bool:
        with self._lock:
            return self._entries.pop(sha, None) is not None

    def raw(self, sha: str) -> bytes:
        """The stored bytes of ``sha`` (KeyError if absent)."""
        offset, length = self._entries[sha]
        return os.pread(self._fd, length, offset)

    def get(self, sha: str) -> ImageFeatures:
        """The features of ``sha`` (KeyError if absent; CorruptShard if the bytes are damaged)."""
        return ImageFeatures.from_bytes(self.raw(sha))

    def get_many(self, ids: Iterable[str]) -> dict[str, ImageFeatures]:
        """Features of the ids present; absent ids are left out."""
        return {sha: self.get(sha) for sha in ids if sha in self._entries}

    def copy_to(self, path: str | Path) -> dict[str, tuple[int, int]]:
        """Write the live entries, compacted, to ``path``; returns their new table of contents."""
        out: dict[str, tuple[int, int]] = {}
        with open(path, "wb") as f:
            for sha, (offset, length) in list(self._entries.items()):
                out[sha] = (f.tell(), length)
                f.write(self.raw(sha))
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass
