"""On-disk cache of serialised features, one ``.npz`` per named batch.

A batch holds parallel lists: names, blobs (feature bytes) and per-item
extraction seconds. Blobs are concatenated into one uint8 array with an
offsets array, so loading never unpickles anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Batch:
    """Feature blobs of a named group of images."""

    names: list[str]
    blobs: list[bytes]
    seconds: list[float]

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, other: "Batch") -> None:
        """Append another batch's items."""
        self.names += other.names
        self.blobs += other.blobs
        self.seconds += other.seconds


class FeatureStore:
    """Directory of batches for one engine fingerprint."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        """File that holds batch ``key``."""
        return self.root / f"{key}.npz"

    def load(self, key: str) -> Batch | None:
        """The cached batch, or None if absent."""
        path = self.path(key)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            data, offsets = z["data"], z["offsets"]
            blobs = [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
            return Batch([str(n) for n in z["names"]], blobs, [float(s) for s in z["seconds"]])

    def save(self, key: str, batch: Batch) -> None:
        """Write a batch atomically (a half-written file is never loaded)."""
        self.root.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(b) for b in batch.blobs]).astype(np.int64)
        data = np.frombuffer(b"".join(batch.blobs), dtype=np.uint8)
        tmp = self.path(key).with_suffix(".tmp.npz")
        np.savez(tmp, data=data, offsets=offsets, names=np.array(batch.names, dtype=str),
                 seconds=np.array(batch.seconds, dtype=np.float64))
        tmp.replace(self.path(key))
