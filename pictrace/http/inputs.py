"""Shared request helpers: query parameters and turning a body into image bytes."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.catalog.catalog import Catalog
from pictrace.catalog.sources import Source, one_image
from pictrace.config import Config
from pictrace.errors import BadRequest
from pictrace.http.bodies import Body, parse_body


def int_param(router: Router, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in ``low..high``; ``default`` when absent or empty."""
    return parse_int(name, router.current_event.get_query_string_value(name, None), default, low, high)


def parse_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """``raw`` as an integer in ``low..high``, written in ASCII decimal digits only.

    ``int()`` alone would also take ``"１０"``, ``"٣"``, ``"1_0"``, ``"+5"`` and
    ``" 5 "``, none of which a client means as a count; raises :class:`BadRequest`.
    """
    if raw is None or raw == "":
        return default
    expected = f"{name} must be an integer from {low} to {high}"
    # The length bound keeps int() off a huge string (it is quadratic in it).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadRequest(f"{expected}, got {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"{expected}, got {value}")
    return value


def body(router: Router, config: Config) -> Body:
    return parse_body(router.current_event.raw_event, config.max_body_bytes)


def single_image(parsed: Body, catalog: Catalog, config: Config) -> Source:
    """The one image a search or add body names: bytes, an upload key, or a URL."""
    if parsed.image is not None:
        return Source(parsed.image)
    fields = parsed.fields or {}
    if "s3_key" in fields:
        key = fields["s3_key"]
        if not isinstance(key, str):
            raise BadRequest("s3_key must be a string")
        return Source(catalog.read_upload(key))
    if "url" in fields:
        url = fields["url"]
        if not isinstance(url, str) or not url:
            raise BadRequest("url must be a non-empty string")
        return one_image(url, config)
    raise BadRequest("JSON body needs one of: url, urls, s3_key")
