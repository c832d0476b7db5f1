"""The OpenAPI description of the REST API: Powertools' schema of the routes, completed.

Powertools derives paths and operations from the routes.  The routes read
their query parameters and bodies themselves (so that validation and its
error messages stay PicTrace's own), so those, and the one error shape
every route answers with, are added here from one table per route.  No
route is validated by Powertools, so its ``HTTPValidationError`` schemas,
which no route returns, are dropped.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from pictrace import __version__
from pictrace.errors import DocsUnavailable

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.models import OpenAPI

# What /docs and /openapi.json both describe.
SPEC = {
    "title": "PicTrace API",
    "version": __version__,
    "description": "Similar-image search: every result carries its SSIM, ORB and histogram signals, "
    "its score (their mean) and the transform that turns it into the query.",
}

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. bad_request, not_found, blocked_url"},
        "message": {"type": "string", "description": "what was wrong, for a person"},
    },
    "additionalProperties": True,
}
_STATUS = {
    400: "bad request (a parameter, a field, a blocked URL)",
    403: "a missing or wrong X-Api-Key",
    404: "no such image, upload or stored query",
    409: "a damaged catalog record",
    413: "a body, image or fetched resource above its limit",
    415: "not an image format PicTrace reads",
    422: "an image that cannot be decoded",
    502: "a URL that could not be fetched, or scoring that failed",
    503: "a part of the deployment that is missing (a job, the API description)",
}


def _query(name: str, kind: str, description: str, **schema: Any) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": {"type": kind, **schema}}


K = _query("k", "integer", "how many results", minimum=1, maximum=50, default=5)
RANKING = _query("ranking", "string", "the ranking to score with", enum=["default", "seed"], default="default")
MODE = _query("mode", "string", "default: copy detection (edits, crops, turns); similar: looks-like (same kind of thing)",
              enum=["default", "similar"], default="default")
MIN_SCORE = _query("min_score", "number", "leave out results scoring below it; [] is a valid answer", minimum=0, maximum=1, default=0)
FILTER = _query(
    "filter", "string",
    'URL-encoded JSON object of field -> value or [values] (string equality, fields ANDed, a list is any of), '
    'e.g. {"tenant": "acme", "kind": ["logo", "icon"]}',
)
META = _query("meta", "string", "URL-encoded JSON object: the image's meta (for a raw image body)")
_META_SCHEMA = {"type": "object", "description": "the client's own fields; strings and lists of strings are filterable"}
_FILTER_SCHEMA = {"type": "object", "description": "field -> value or [values]", "additionalProperties": True}
_SIDE = {
    "type": "object",
    "description": "exactly one of url, id or s3_key",
    "properties": {"url": {"type": "string"}, "id": {"type": "string"}, "s3_key": {"type": "string"}},
}
_IMAGE_BODY = {
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "min_score": {"type": "number"},
                    "meta": {"type": "string", "description": "add only: JSON text of the image's meta"},
                    "filter": {"type": "string", "description": "search only: JSON text of the filter"},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "description": "one of url (an image or a page), urls (add only), s3_key (from POST /uploads) or query (search only: an earlier query's sha256)",
                "properties": {
                    "url": {"type": "string"},
                    "urls": {"type": "array", "items": {"type": "string"}},
                    "s3_key": {"type": "string"},
                    "query": {"type": "string"},
                    "name": {"type": "string"},
                    "min_score": {"type": "number"},
                    "meta": _META_SCHEMA,
                    "filter": _FILTER_SCHEMA,
                },
            }
        },
    }
}
_PATCH_BODY = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["meta"], "properties": {"meta": _META_SCHEMA}, "additionalProperties": False}
        }
    }
}
_COMPARE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["a", "b"],
                "description": "files, or text naming a URL, an image id or an upload key",
                "properties": {"a": {"type": "string", "format": "binary"}, "b": {"type": "string", "format": "binary"}},
            }
        },
        "application/json": {
            "schema": {"type": "object", "required": ["a", "b"], "properties": {"a": _SIDE, "b": _SIDE}}
        },
    }
}
_UPLOAD_BODY = {
    "content": {"application/json": {"schema": {"type": "object", "properties": {"content_type": {"type": "string"}}}}}
}

# (path, method) -> (query parameters, request body, error statuses)
OPERATIONS: dict[tuple[str, str], tuple[list[dict], dict | None, tuple[int, ...]]] = {
    ("/search", "post"): ([K, RANKING, MODE, MIN_SCORE, FILTER], _IMAGE_BODY, (400, 403, 404, 413, 415, 422, 502, 503)),
    ("/images", "post"): ([META], _IMAGE_BODY, (400, 403, 404, 413, 415, 422, 502)),
    ("/images", "get"): (
        [
            _query("limit", "integer", "how many records", minimum=1, default=50),
            _query("cursor", "string", "next_cursor of the previous page"),
            FILTER,
        ],
        None,
        (400, 403),
    ),
    ("/images/{image_id}", "patch"): ([], _PATCH_BODY, (400, 403, 404, 409, 413)),
    ("/images/{image_id}", "get"): ([], None, (403, 404, 409)),
    ("/images/{image_id}", "delete"): ([], None, (403, 404)),
    ("/images/{image_id}/similar", "get"): ([K, RANKING, MODE, MIN_SCORE, FILTER], None, (400, 403, 404, 502, 503)),
    ("/images/{image_id}/matches", "get"): (
        [_query("query", "string", "sha256 of an earlier search's query")],
        None,
        (400, 403, 404),
    ),
    ("/compare", "post"): ([RANKING], _COMPARE_BODY, (400, 403, 404, 413, 415, 422, 502)),
    ("/uploads", "post"): ([], _UPLOAD_BODY, (400, 403)),
    ("/duplicates", "get"): (
        [
            _query("min_score", "number", "groups of images scoring at least this together (not below the scan's floor, 0.5)", minimum=0, maximum=1, default=0.8),
            _query("limit", "integer", "how many groups", minimum=1, maximum=100, default=20),
            _query("cursor", "string", "next_cursor of the previous page"),
        ],
        None,
        (400, 403, 502),
    ),
    ("/duplicates", "post"): ([], None, (403, 503)),
}


def complete(spec: dict) -> dict:
    """``spec`` (an OpenAPI document as a dict) with PicTrace's parameters, bodies and errors."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        components.pop(unused, None)
    components["Error"] = ERROR
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            for status in ("422", "400"):
                if "HTTPValidationError" in str(responses.get(status, "")):
                    del responses[status]
            params, body, errors = OPERATIONS.get((path, method), ([], None, ()))
            if params:
                operation["parameters"] = [*operation.get("parameters", []), *params]
            if body is not None:
                operation["requestBody"] = {"required": True, **body}
            for status in errors:
                responses[str(status)] = {
                    "description": _STATUS[status],
                    "content": {"application/json": {"schema": error_ref}},
                }
    return spec


def available() -> bool:
    """Whether the description can be generated: Powertools builds it with pydantic.

    The Lambda layer may not ship pydantic; the API works without it, only
    /docs and /openapi.json answer 503.
    """
    try:
        return importlib.util.find_spec("pydantic") is not None
    except (ImportError, ValueError):  # a module entry left broken by a failed import
        return False


def require() -> None:
    """DocsUnavailable unless the description can be generated."""
    if not available():
        raise DocsUnavailable("the API description needs pydantic, which this deployment does not include")


class DescribedResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, whose OpenAPI schema is :func:`complete`\'s."""

    def get_openapi_schema(self, **kwargs: Any) -> "OpenAPI":
        require()
        from aws_lambda_powertools.event_handler.openapi.models import OpenAPI  # imports pydantic

        schema = super().get_openapi_schema(**kwargs)
        return OpenAPI.model_validate(complete(schema.model_dump(by_alias=True, exclude_none=True, mode="json")))
