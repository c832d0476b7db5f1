"""Indexing function: S3 ObjectCreated/ObjectRemoved under catalog/.

Each record of an event is handled on its own: bad input is logged and
reported under "rejected", an unexpected failure under "failed", and neither
stops the records after it.  Only a storage error is raised again at the end,
once every record had its turn, so Lambda retries the event (indexing and
forgetting are idempotent, so the retry repeats nothing harmful).
"""

from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

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
    outcome: dict[str, list] = {"indexed": [], "duplicates": [], "removed": [], "rejected": [], "failed": []}
    retry: Exception | None = None
    for record in event.get("Records", []):
        key = unquote_plus(record.get("s3", {}).get("object", {}).get("key", ""))
        try:
            if record.get("eventName", "").startswith("ObjectRemoved"):
                removed = catalog.forget_object(key)
                if removed:
                    outcome["removed"].append({"key": key, "id": removed})
                continue
            added = catalog.index_object(key)
        except PicTraceError as exc:
            # Nobody waits on this call, so the reason goes to the log and the result.
            logger.error("catalog object rejected", extra={"key": key, **exc.log_fields()})
            outcome["rejected"].append({"key": key, **exc.to_dict()})
            continue
        except (ClientError, BotoCoreError) as exc:
            logger.exception("catalog object not reachable; the event will be retried", extra={"key": key})
            outcome["failed"].append({"key": key, "error": "storage_error", "message": str(exc)})
            retry = exc
            continue
        except Exception as exc:  # a defect, not the input's fault: retrying would fail the same way
            logger.exception("catalog object failed", extra={"key": key})
            outcome["failed"].append({"key": key, "error": "internal_error", "message": exc.__class__.__name__})
            continue
        bucket = "indexed" if added.created else "duplicates"
        outcome[bucket].append({"key": key, "id": added.record.id})
    metrics.add_metric(name="ImagesIndexed", unit=MetricUnit.Count, value=len(outcome["indexed"]))
    metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=len(outcome["rejected"]) + len(outcome["failed"]))
    if retry is not None:
        raise retry
    return outcome
