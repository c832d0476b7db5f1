"""POST /search.

Besides the image forms every route takes, JSON ``{"query": sha256}``
searches again with a query stored by an earlier search, so a search can
be linked to without its image.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics import MetricUnit

from pictrace.catalog import layout
from pictrace.catalog.search import search as run_search
from pictrace.catalog.sources import Source
from pictrace.errors import BadRequest, NotFound
from pictrace.http.bodies import Body
from pictrace.http.inputs import body, int_param, single_image
from pictrace.http.options import min_score, search_filter
from pictrace.runtime import Services, services

router = Router()
metrics = Metrics()


@router.post("/search")
def search() -> dict:
    s = services()
    k = int_param(router, "k", s.config.default_k, 1, s.config.max_k)
    ranking = router.current_event.get_query_string_value("ranking", "default")
    mode = router.current_event.get_query_string_value("mode", "default")  # "similar": looks-like search
    parsed = body(router, s.config)
    threshold = min_score(router, parsed.fields)
    wanted = search_filter(router, parsed.fields)
    source = _query_source(parsed, s)
    result = run_search(s.catalog, s.invoker, source.data, k=k, ranking=ranking, mode=mode, min_score=threshold, filter=wanted)
    if source.image_url:
        result["query"]["image_url"] = source.image_url
        result["query"]["page_url"] = source.page_url
    metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=result["elapsed_ms"])
    metrics.add_metric(name="CandidatesScored", unit=MetricUnit.Count, value=result["counts"]["scored_candidates"])
    metrics.add_metric(name="FailedBatches", unit=MetricUnit.Count, value=result["counts"]["failed_batches"])
    return result


def _query_source(parsed: Body, s: Services) -> Source:
    """The image to search with: a stored earlier query, else what the body names."""
    fields = parsed.fields or {}
    if parsed.image is not None or "query" not in fields:
        return single_image(parsed, s.catalog, s.config)
    sha = fields["query"]
    if not isinstance(sha, str) or not layout.is_image_id(sha):
        raise BadRequest("query must be the sha256 of a previous search's query")
    try:
        return Source(s.store.get(layout.query_key(sha), max_bytes=s.config.max_image_bytes))
    except NotFound:
        raise NotFound(f"no stored query {sha} (stored queries expire)") from None
