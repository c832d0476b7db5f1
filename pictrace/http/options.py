"""Search options read from the query string or the JSON body: ``min_score``."""

from __future__ import annotations

import math
import re

from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.errors import BadRequest

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
