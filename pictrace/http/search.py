"""POST /search."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics import MetricUnit

from pictrace.catalog.search import search as run_search
from pictrace.http.inputs import body, int_param, single_image
from pictrace.http.options import min_score
from pictrace.runtime import services

router = Router()
metrics = Metrics()


@router.post("/search")
def search() -> dict:
    s = services()
    k = int_param(router, "k", s.config.default_k, 1, s.config.max_k)
    ranking = router.current_event.get_query_string_value("ranking", "default")
    parsed = body(router, s.config)
    threshold = min_score(router, parsed.fields)
    source = single_image(parsed, s.catalog, s.config)
    result = run_search(s.catalog, s.invoker, source.data, k=k, ranking=ranking, min_score=threshold)
    if source.image_url:
        result["query"]["image_url"] = source.image_url
        result["query"]["page_url"] = source.page_url
    metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=result["elapsed_ms"])
    metrics.add_metric(name="CandidatesScored", unit=MetricUnit.Count, value=result["counts"]["scored_candidates"])
    metrics.add_metric(name="FailedBatches", unit=MetricUnit.Count, value=result["counts"]["failed_batches"])
    return result
