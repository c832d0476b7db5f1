"""What the catalog remembers about each image, and how it is shown.

A record read back from the bucket is checked field by field: one damaged
object raises :class:`~pictrace.errors.DamagedRecord` naming what is wrong,
so callers can skip and report it instead of failing everything around it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field

from pictrace.errors import DamagedRecord

_SHA = re.compile(r"[0-9a-f]{64}")
# Field name -> the JSON types it may hold (bool is excluded from the numbers below).
_REQUIRED = {"id": str, "key": str, "format": str, "width": int, "height": int, "bytes": int}
_OPTIONAL = {"added_at": (int, float), "name": str, "image_url": str, "page_url": str, "etag": str, "thumb": str, "meta": dict, "labels": list}


def labels_json(labels) -> list[dict]:
    """(label, probability) pairs of an image's features as records and answers hold them."""
    return [{"label": str(name), "probability": round(float(p), 4)} for name, p in labels]


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
    etag: str = ""  # the original's ETag when it was indexed ("" in records older than this field)
    thumb: str = ""  # key of the display thumbnail ("" in records made before thumbnails)
    # Top ImageNet labels, [{"label", "probability"}], best first ([] without the model, until reindex)
    labels: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # the client's own fields (pictrace.core.filters bounds them)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "record") -> "ImageRecord":
        """Parse a stored record; DamagedRecord (never another error) if it is not one."""
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DamagedRecord(f"{where} is not JSON ({exc.__class__.__name__})", object=where) from None
        if not isinstance(raw, dict):
            raise DamagedRecord(f"{where} is not a JSON object", object=where)
        for name, kind in {**_REQUIRED, **_OPTIONAL}.items():
            if name not in raw:
                if name in _REQUIRED:
                    raise DamagedRecord(f"{where} has no {name!r}", object=where)
                continue
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise DamagedRecord(f"{where} has a malformed {name!r}", object=where)
        if not _SHA.fullmatch(raw["id"]):
            raise DamagedRecord(f"{where} has a malformed 'id'", object=where)
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})

    def filterable(self) -> dict:
        """What a filter matches the image by: its meta, plus its labels as field "label"."""
        from pictrace.core.compact import filterable  # OpenCV only where filters are matched

        return filterable(self.meta, [(x.get("label"), x.get("probability")) for x in self.labels if isinstance(x, dict)])

    def result_meta(self) -> dict:
        """The part of the record a search result needs."""
        return {
            "key": self.key,
            "name": self.name,
            "image_url": self.image_url,
            "page_url": self.page_url,
            "added_at": self.added_at,
            "thumb": self.thumb,
            "labels": self.labels,
            "meta": self.meta,
        }

    def public(self) -> dict:
        out = asdict(self)
        del out["etag"]  # bookkeeping for re-indexing, not part of the answer
        del out["thumb"]  # answers carry a presigned thumb_url instead
        return out
