"""Duplicates function: the duplicate-groups scan over the whole index (on demand and daily).

A scan that runs out of time invokes this function again to go on where it
stopped (``{"run", "resume"}``), so a large catalog takes several invocations.
"""

from aws_lambda_powertools import Logger, Tracer

from pictrace.catalog.duplicates import run
from pictrace.runtime import keeps_time, services, time_left

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@keeps_time
def lambda_handler(event: dict, context) -> dict:
    s = services()
    # POST /duplicates names its run; the schedule's event does not, so the job makes one.
    outcome = run(s.catalog, event, time_left, invoke=s.start_duplicates)
    logger.info("duplicates scan", extra=outcome)
    return outcome
