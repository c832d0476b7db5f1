"""What the catalog remembers about each image, and how it is shown."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ImageRecord:
    id: str  # sha256 of the original bytes
    key: str  # S3 key of the original
    format: str
    width: int
    height: int
    bytes: int
    added_at: float = field(default_factory=time.time)
    name: str = ""
    image_url: str = ""  # where it was fetched from, if it came from a URL
    page_url: str = ""  # the page it was found on, if any

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ImageRecord":
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def shard_meta(self) -> dict:
        """The part of the record a search result needs, carried in the shard row."""
        return {
            "key": self.key,
            "name": self.name,
            "image_url": self.image_url,
            "page_url": self.page_url,
            "added_at": self.added_at,
        }

    def public(self) -> dict:
        return asdict(self)
