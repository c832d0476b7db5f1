"""Indexing function: S3 ObjectCreated/ObjectRemoved under catalog/."""

from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from pictrace.errors import PicTraceError
from pictrace.runtime import services

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context) -> dict:
    catalog = services().catalog
    outcome = {"indexed": [], "duplicates": [], "removed": [], "rejected": []}
    for record in event.get("Records", []):
        key = unquote_plus(record["s3"]["object"]["key"])
        if record["eventName"].startswith("ObjectRemoved"):
            removed = catalog.forget_object(key)
            if removed:
                outcome["removed"].append({"key": key, "id": removed})
            continue
        try:
            added = catalog.index_object(key)
        except PicTraceError as exc:
            # Nobody waits on this call, so the reason goes to the log and the result.
            logger.error("catalog object rejected", extra={"key": key, **exc.log_fields()})
            outcome["rejected"].append({"key": key, **exc.to_dict()})
            continue
        bucket = "indexed" if added.created else "duplicates"
        outcome[bucket].append({"key": key, "id": added.record.id})
    metrics.add_metric(name="ImagesIndexed", unit=MetricUnit.Count, value=len(outcome["indexed"]))
    metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=len(outcome["rejected"]))
    return outcome
