"""S3-triggered search: an image under incoming/ gets results/<key>.json."""

import json
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer

from pictrace.catalog import layout
from pictrace.catalog.search import search
from pictrace.errors import PicTraceError
from pictrace.runtime import keeps_time, services

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@keeps_time
def lambda_handler(event: dict, context) -> dict:
    s = services()
    written = []
    for record in event.get("Records", []):
        # A record without a key names no object to answer for: skipped, like one outside incoming/.
        key = unquote_plus(record.get("s3", {}).get("object", {}).get("key", ""))
        if not key.startswith(layout.INCOMING):
            continue
        try:
            data = s.store.get(key, max_bytes=s.config.max_image_bytes)
            body = search(s.catalog, s.invoker, data, k=s.config.default_k)
        except PicTraceError as exc:
            logger.warning("search from S3 failed", extra={"key": key, **exc.log_fields()})
            body = exc.to_dict()
        except Exception as exc:  # a defect must still leave a result, and not stop the next record
            logger.exception("search from S3 crashed", extra={"key": key})
            body = {"error": "internal_error", "message": f"the search failed ({exc.__class__.__name__})"}
        body["source_key"] = key
        out = layout.result_key(key)
        s.store.put(out, json.dumps(body).encode(), content_type="application/json")
        written.append(out)
    return {"results": written}
