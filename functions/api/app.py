"""API function: every REST route of PicTrace."""

from aws_lambda_powertools.logging import correlation_paths

from pictrace.http.app import app, logger, metrics, tracer
from pictrace.runtime import keeps_time


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
@keeps_time
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
