"""The REST API: one Powertools resolver, routers per resource, errors mapped in one place."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import CORSConfig, Response, content_types

from pictrace.config import Config
from pictrace.errors import PicTraceError
from pictrace.http import compare, duplicates, images, search, site
from pictrace.http import openapi
from pictrace.http.openapi import DescribedResolver

# Most routes publish no metric; Powertools would warn about that on every request.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# The same origin API Gateway answers preflights with (the template's CorsAllowOrigin).
app = DescribedResolver(
    cors=CORSConfig(
        allow_origin=Config.from_env().cors_allow_origin, allow_headers=["Content-Type", "X-Api-Key"], max_age=600
    ),
    strip_prefixes=None,
)
app.include_router(search.router)
app.include_router(images.router)
app.include_router(compare.router)
app.include_router(duplicates.router)
app.include_router(site.router)
if openapi.available():
    # Swagger UI, its scripts inlined (no CDN); ?format=json is the same document as /openapi.json.
    app.enable_swagger(path="/docs", **openapi.SPEC)
else:

    @app.get("/docs", include_in_schema=False)
    def docs_unavailable() -> dict:
        openapi.require()
        return {}


@app.get("/openapi.json", include_in_schema=False)
def openapi_json() -> Response[str]:
    openapi.require()  # before Powertools imports pydantic for the schema
    body = app.get_openapi_json_schema(**openapi.SPEC)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body)


def json_error(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(PicTraceError)
def handle_pictrace_error(exc: PicTraceError) -> Response:
    logger.info("request refused", extra={"status": exc.status, **exc.log_fields()})
    return json_error(exc.status, exc.to_dict())


@app.not_found
def handle_not_found(exc: Exception) -> Response:
    event = app.current_event
    return json_error(
        404, {"error": "not_found", "message": f"no route for {event.http_method} {event.path}"}
    )
