"""Duplicate groups: GET /duplicates (a page of groups from the last scan), POST /duplicates (start a scan)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace.catalog import duplicates
from pictrace.http.inputs import int_param
from pictrace.http.options import parse_min_score
from pictrace.runtime import services

router = Router()


@router.get("/duplicates")
def list_duplicates() -> dict:
    s = services()
    raw = router.current_event.get_query_string_value("min_score", None)
    threshold = parse_min_score(raw) if raw else duplicates.DEFAULT_MIN_SCORE
    limit = int_param(router, "limit", 20, 1, s.config.duplicates_page_max)
    cursor = router.current_event.get_query_string_value("cursor", None) or None
    return duplicates.page(s.catalog, min_score=threshold, limit=limit, cursor=cursor)


@router.post("/duplicates")
def start_scan() -> Response[dict]:
    """Queue a scan of the whole catalog; 202 with its status (the one queued or running already, if any)."""
    s = services()
    job, started = duplicates.start(s.catalog, s.start_duplicates)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body={"job": job, "started": started})
