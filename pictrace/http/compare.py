"""POST /compare: two images, the three signals, the score, the transform and the matched keypoints.

Each side is named the way a search names its query: image bytes (a
multipart file field ``a`` or ``b``), a URL, a catalog image id, or an
upload key.  Every side is checked before any is fetched or read, and
nothing is stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.catalog import layout
from pictrace.catalog.sources import one_image
from pictrace.core.features import extract_features
from pictrace.core.pair import compare as compare_pair
from pictrace.core.probe import probe
from pictrace.core.rerank import RANKINGS
from pictrace.core.scoring import query_from_bytes
from pictrace.errors import BadRequest, PayloadTooLarge
from pictrace.http.bodies import Part, form_parts, parse_body, raw_body
from pictrace.runtime import Services, services

router = Router()
SIDES = ("a", "b")
_KINDS = ("url", "id", "s3_key")


@dataclass(frozen=True)
class Side:
    """One image to compare, before it is read: exactly one of bytes or a named source."""

    kind: str  # "bytes", "url", "id" or "s3_key"
    value: str = ""
    data: bytes = b""
    name: str = ""


@router.post("/compare")
def compare() -> dict:
    s = services()
    ranking = router.current_event.get_query_string_value("ranking", "default")
    if ranking not in RANKINGS:
        raise BadRequest(f"ranking must be one of {', '.join(RANKINGS)}")
    a, b = _sides(s)
    (a_data, a_info), (b_data, b_info) = _read(a, s), _read(b, s)
    query = query_from_bytes(a_data, max_pixels=s.config.max_pixels)
    found = compare_pair(query, extract_features(b_data, max_pixels=s.config.max_pixels), ranking=ranking)
    return {"a": _describe(a_data, a_info), "b": _describe(b_data, b_info), "ranking": ranking, **found.to_dict()}


def _sides(s: Services) -> tuple[Side, Side]:
    event = router.current_event
    ctype = event.headers.get("content-type") or ""
    if ctype.split(";", 1)[0].strip().lower() == "multipart/form-data":
        parts = {p.name: p for p in form_parts(raw_body(event.raw_event, s.config.max_body_bytes), ctype)}
        missing = [n for n in SIDES if n not in parts]
        if missing:
            raise BadRequest(f"multipart body needs fields a and b (missing {', '.join(missing)})")
        return _form_side("a", parts["a"]), _form_side("b", parts["b"])
    fields = parse_body(event.raw_event, s.config.max_body_bytes).fields
    if fields is None:
        raise BadRequest("send multipart/form-data with fields a and b, or JSON {\"a\": {...}, \"b\": {...}}")
    return _json_side("a", fields.get("a")), _json_side("b", fields.get("b"))


def _form_side(name: str, part: Part) -> Side:
    if part.is_file:
        if not part.content:
            raise BadRequest(f"field {name} is an empty file")
        return Side("bytes", data=part.content, name=part.filename)
    text = part.content.decode("utf-8", "replace").strip()
    # A text field names an image the way JSON does; its shape says which way.
    if layout.is_image_id(text):
        return _checked(name, "id", text)
    if layout.is_upload_key(text):
        return _checked(name, "s3_key", text)
    return _checked(name, "url", text)


def _json_side(name: str, value: object) -> Side:
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be an object with one of: {', '.join(_KINDS)}")
    given = [k for k in _KINDS if k in value]
    if len(given) != 1:
        raise BadRequest(f"{name} must have exactly one of: {', '.join(_KINDS)}")
    kind = given[0]
    text = value[kind]
    if not isinstance(text, str) or not text:
        raise BadRequest(f"{name}.{kind} must be a non-empty string")
    return _checked(name, kind, text)


def _checked(name: str, kind: str, text: str) -> Side:
    """A named side whose value has the right shape (nothing is fetched yet)."""
    if kind == "id" and not layout.is_image_id(text):
        raise BadRequest(f"{name}.id must be an image id (64 hex characters)")
    if kind == "s3_key" and not layout.is_upload_key(text):
        raise BadRequest(f"{name}.s3_key must be a key returned by POST /uploads")
    if kind == "url" and not text.lower().startswith(("http://", "https://")):
        raise BadRequest(f"{name} must be an image file, an http(s) URL, an image id or an upload key")
    return Side(kind, value=text)


def _read(side: Side, s: Services) -> tuple[bytes, dict]:
    """The side's image bytes and what to say about where they came from."""
    if side.kind == "bytes":
        data, info = side.data, {"name": side.name}
    elif side.kind == "id":
        record = s.catalog.get(side.value)
        data, info = s.store.get(record.key, max_bytes=s.config.max_image_bytes), {"id": record.id, "name": record.name}
    elif side.kind == "s3_key":
        data, info = s.catalog.read_upload(side.value), {"s3_key": side.value}
    else:
        got = one_image(side.value, s.config)
        data, info = got.data, {"image_url": got.image_url, "page_url": got.page_url}
    if len(data) > s.config.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {s.config.max_image_bytes}")
    return data, info


def _describe(data: bytes, info: dict) -> dict:
    probed = probe(data)
    width, height = probed.oriented_size
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": probed.format,
        "width": width,
        "height": height,
        "bytes": len(data),
        **{k: v for k, v in info.items() if v},
    }
