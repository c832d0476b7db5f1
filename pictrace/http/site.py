"""GET / (the web page) and GET /health."""

from __future__ import annotations

from importlib import resources

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace import __version__
from pictrace.runtime import services

router = Router()


@router.get("/")
def index() -> Response:
    page = resources.files("pictrace.web").joinpath("index.html").read_text(encoding="utf-8")
    return Response(status_code=200, content_type=content_types.TEXT_HTML, body=page)


@router.get("/health")
def health() -> dict:
    s = services()
    return {"status": "ok", "version": __version__, "bucket": s.config.bucket}
