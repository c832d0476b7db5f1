"""Scoring function: one invocation scores one batch of candidates."""

from aws_lambda_powertools import Logger, Tracer

from pictrace.catalog.batch import score_batch
from pictrace.errors import PicTraceError
from pictrace.runtime import services

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context) -> dict:
    s = services()
    try:
        return score_batch(s.store, event, s.cache, s.config.shortlist)
    except PicTraceError as exc:
        # A deliberate error is answered, not raised: retrying it cannot help.
        logger.warning("batch refused", extra=exc.log_fields())
        return exc.to_dict()
