"""What a fetched body is, and which images a web page points to. Pure, no network.

:func:`sniff_kind` trusts magic bytes, never the server's Content-Type.
:func:`harvest_images` and :func:`primary_image` read a page with the standard
library's :mod:`html.parser`, which tolerates broken markup and runs no script.
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urldefrag, urljoin, urlsplit

PAGE_MAX_BYTES = 2 * 2**20
"""Byte cap for fetching an HTML page (images get FetchPolicy's default)."""

Kind = Literal["image", "html", "other"]

_OPEN_GRAPH_KEYS = frozenset({"og:image", "og:image:url", "og:image:secure_url"})
_TWITTER_KEYS = frozenset({"twitter:image", "twitter:image:src"})
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""")
_URL_NOISE = re.compile(r"[\t\n\r]")
_LEADING_INT = re.compile(r"\s*(\d+)")
# Below this on either side an <img> is a tracking pixel or spacer.
_MIN_PRIMARY_SIDE = 3


def sniff_kind(data: bytes) -> Kind:
    """Classify ``data`` by content: ``"image"``, ``"html"`` or ``"other"``.

    Images are recognised by the magic bytes of JPEG, PNG, GIF, WebP, BMP
    (with a valid DIB header size) and TIFF. HTML is a body that, after a BOM
    and whitespace, starts with ``<!doctype html``, ``<html``, ``<head`` or
    ``<body``, or that contains ``<html`` in its first KiB (case-insensitive).
    """
    if _is_image(data):
        return "image"
    head = _text_head(data[:1024]).lower()
    if head.lstrip().startswith(_HTML_STARTS) or b"<html" in head:
        return "html"
    return "other"


def _is_image(data: bytes) -> bool:
    return (
        data.startswith(b"\xff\xd8\xff")
        or data.startswith(b"\x89PNG\r\n\x1a\n")
        or data.startswith((b"GIF87a", b"GIF89a"))
        or (data.startswith(b"RIFF") and data[8:12] == b"WEBP")
        or data.startswith((b"II*\x00", b"MM\x00*"))
        or (
            data.startswith(b"BM")
            and len(data) >= 18
            and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES
        )
    )


def _text_head(head: bytes) -> bytes:
    """The start of a document as ASCII-compatible bytes, without its BOM."""
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            text = head[len(bom) :].decode(codec, errors="ignore")
            return text.encode("ascii", errors="ignore")
    return head.removeprefix(codecs.BOM_UTF8)


def harvest_images(html: bytes | str, base_url: str, *, max_images: int = 50) -> list[str]:
    """Absolute http(s) image URLs a page names, deduplicated, at most ``max_images``.

    Order: ``og:image``/``og:image:url``/``twitter:image`` meta tags first, then
    ``<img>`` and ``<picture><source>`` elements in document order. For each
    element its best candidate comes first: the largest ``srcset`` entry (by
    ``w``, else ``x`` descriptor), then ``data-srcset``, ``data-src`` and
    ``src``. Relative URLs resolve against ``<base href>`` (itself resolved
    against ``base_url``) or ``base_url``; ``data:`` and other non-http(s)
    URLs and fragments are dropped.
    """
    page = _scan(html, base_url)
    raw = [url for _, url in page.meta] + [url for element in page.elements for url in element.urls]
    found: dict[str, None] = {}
    for candidate in raw:
        url = _absolute(candidate, page.base)
        if url is not None:
            found.setdefault(url, None)
            if len(found) >= max_images:
                break
    return list(found)


def primary_image(html: bytes | str, base_url: str) -> str | None:
    """The one image that best stands for the page, or None if it names none.

    An Open Graph image wins, then a Twitter card image, then the ``<img>``
    with the largest declared ``width`` x ``height``; if no image declares
    both, the first ``<img>``. Images declared smaller than 3 px on a side
    (tracking pixels, spacers) are never chosen.
    """
    page = _scan(html, base_url)
    for keys in (_OPEN_GRAPH_KEYS, _TWITTER_KEYS):
        for key, raw in page.meta:
            url = _absolute(raw, page.base) if key in keys else None
            if url is not None:
                return url
    choices = []
    for element in page.elements:
        if element.tag != "img" or element.is_spacer:
            continue
        url = next(filter(None, (_absolute(raw, page.base) for raw in element.urls)), None)
        if url is not None:
            choices.append((element.area, url))
    if not choices:
        return None
    # max() keeps the first of equals, so undeclared sizes fall back to document order.
    return max(choices, key=lambda choice: choice[0])[1]


@dataclass
class _Element:
    tag: str
    urls: list[str]
    width: int | None = None
    height: int | None = None

    @property
    def area(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @property
    def is_spacer(self) -> bool:
        sides = (self.width, self.height)
        return any(side is not None and side < _MIN_PRIMARY_SIDE for side in sides)


@dataclass
class _Page:
    base: str
    meta: list[tuple[str, str]] = field(default_factory=list)
    elements: list[_Element] = field(default_factory=list)


class _ImageScanner(HTMLParser):
    """Collects meta images, ``<img>``/``<picture><source>`` URLs and ``<base href>``."""

    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = _Page(base=page_url)
        self._base_seen = False
        self._picture_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values: dict[str, str] = {}
        for name, value in attrs:
            values.setdefault(name, value or "")  # HTML keeps the first duplicate
        if tag == "base" and "href" in values and not self._base_seen:
            self._base_seen = True
            self.page.base = _absolute(values["href"], self.page.base) or self.page.base
        elif tag == "meta":
            key = (values.get("property") or values.get("name") or "").strip().lower()
            if key in _OPEN_GRAPH_KEYS | _TWITTER_KEYS and values.get("content"):
                self.page.meta.append((key, values["content"]))
        elif tag == "picture":
            self._picture_depth += 1
        elif tag == "img" or (tag == "source" and self._picture_depth):
            self.page.elements.append(_element(tag, values))

    def handle_endtag(self, tag: str) -> None:
        if tag == "picture" and self._picture_depth:
            self._picture_depth -= 1


def _element(tag: str, values: dict[str, str]) -> _Element:
    """An image element's candidate URLs, best first, and its declared size."""
    urls = [
        _largest_candidate(values.get("srcset", "")),
        _largest_candidate(values.get("data-srcset", "")),
        values.get("data-src"),
        values.get("src") if tag == "img" else None,
    ]
    return _Element(
        tag=tag,
        urls=[url for url in urls if url],
        width=_dimension(values.get("width")),
        height=_dimension(values.get("height")),
    )


def _scan(html: bytes | str, page_url: str) -> _Page:
    scanner = _ImageScanner(page_url)
    scanner.feed(html if isinstance(html, str) else _decode(html))
    scanner.close()
    return scanner.page


def _decode(html: bytes) -> str:
    """Decode page bytes by BOM, else a declared charset, else UTF-8 (lossy)."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if html.startswith(bom):
            return html[len(bom) :].decode(codec, errors="replace")
    declared = _CHARSET.search(html[:1024])
    codec = "utf-8"
    if declared:
        try:
            codec = codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            pass
    return html.decode(codec, errors="replace")


def _largest_candidate(srcset: str) -> str | None:
    """The ``srcset`` URL with the largest ``w`` descriptor, else largest ``x``."""
    best, best_size = None, (-1, -1.0)
    for url, descriptors in _srcset_candidates(srcset):
        size = _candidate_size(descriptors)
        if size is not None and size > best_size:
            best, best_size = url, size
    return best


def _srcset_candidates(srcset: str) -> list[tuple[str, list[str]]]:
    """Split a ``srcset`` per the HTML standard: URLs may contain commas, descriptors not."""
    candidates, pos, end = [], 0, len(srcset)
    while True:
        while pos < end and (srcset[pos].isspace() or srcset[pos] == ","):
            pos += 1
        if pos >= end:
            return candidates
        start = pos
        while pos < end and not srcset[pos].isspace():
            pos += 1
        url = srcset[start:pos]
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = pos, 0
            while pos < end and (srcset[pos] != "," or depth):
                depth += {"(": 1, ")": -1}.get(srcset[pos], 0)
                pos += 1
            descriptors = srcset[start:pos]
        candidates.append((url, descriptors.split()))


def _candidate_size(descriptors: list[str]) -> tuple[int, float] | None:
    """Rank a candidate: width descriptors above densities; None if malformed."""
    for descriptor in descriptors:
        unit = descriptor[-1:].lower()
        if unit not in ("w", "x"):
            continue  # "h" and future descriptors do not rank
        try:
            value = float(int(descriptor[:-1]) if unit == "w" else float(descriptor[:-1]))
        except ValueError:
            return None
        if not 0 < value < math.inf:
            return None
        return (1 if unit == "w" else 0, value)
    return (0, 1.0)  # no descriptor means 1x


def _dimension(value: str | None) -> int | None:
    """A declared ``width``/``height`` in pixels; None if absent or a percentage."""
    if not value or "%" in value:
        return None
    match = _LEADING_INT.match(value)
    return int(match.group(1)) if match else None


def _absolute(raw: str, base: str) -> str | None:
    """``raw`` resolved against ``base`` without its fragment, if it is http(s)."""
    cleaned = _URL_NOISE.sub("", raw).strip()
    if not cleaned:
        return None
    try:
        url = urldefrag(urljoin(base, cleaned)).url
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url
