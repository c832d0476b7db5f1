"""Options read from the query string or the body: ``min_score``, ``filter`` and an add's ``meta``."""

from __future__ import annotations

import math
import re

from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.core.filters import Filter, check_meta, parse_json_object
from pictrace.errors import BadRequest, InvalidFilter, InvalidMeta

# Plain decimals only: no exponents, "nan", "inf", signs or digits of other scripts.
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,12})?|\.[0-9]{1,12}")


def min_score(router: Router, fields: dict | None = None) -> float:
    """The ``min_score`` a request asks for (0 when absent): a number from 0 to 1.

    The query string wins over a JSON body field; both must agree in kind:
    the query string is text, the body a JSON number.
    """
    raw = router.current_event.get_query_string_value("min_score", None)
    if raw is not None and raw != "":
        return parse_min_score(raw)
    value = (fields or {}).get("min_score")
    if value is None:
        return 0.0
    if isinstance(value, str):
        return parse_min_score(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"min_score must be a number from 0 to 1, got {type(value).__name__}")
    return _in_range(float(value), str(value))


def parse_min_score(text: str) -> float:
    """``text`` as a score threshold from 0 to 1; BadRequest otherwise."""
    if not _DECIMAL.fullmatch(text):
        raise BadRequest(f"min_score must be a number from 0 to 1, got {text[:40]!r}")
    return _in_range(float(text), text)


def _in_range(value: float, shown: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRequest(f"min_score must be a number from 0 to 1, got {shown[:40]}")
    return value


def search_filter(router: Router, fields: dict | None = None) -> Filter:
    """The ``filter`` a request asks for: URL-encoded JSON in the query string, or a body field.

    A JSON body holds it as an object, a multipart body as a field of JSON
    text; giving it in both the query string and the body is refused.
    """
    raw = _json_option(router, fields, "filter", InvalidFilter)
    return Filter.parse(raw)


def image_meta(router: Router, fields: dict | None = None) -> dict | None:
    """The ``meta`` an add asks for, from the query string or the body as :func:`search_filter` reads it; None if absent."""
    raw = _json_option(router, fields, "meta", InvalidMeta)
    return None if raw is None else check_meta(raw)


def _json_option(router: Router, fields: dict | None, name: str, error: type) -> object:
    text = router.current_event.get_query_string_value(name, None)
    value = (fields or {}).get(name)
    if text not in (None, "") and value is not None:
        raise error(f"{name} is given both in the query string and in the body; give it once")
    if text not in (None, ""):
        return parse_json_object(text, name, error)
    if isinstance(value, str) and _is_form(router):
        return parse_json_object(value, name, error)  # a form field is text
    return value


def _is_form(router: Router) -> bool:
    headers = router.current_event.raw_event.get("headers") or {}
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type" and isinstance(v, str)), "")
    return ctype.strip().lower().startswith("multipart/form-data")
