"""Packing function: folds pending rows into shards (scheduled every minute)."""

from dataclasses import asdict

from aws_lambda_powertools import Logger, Tracer

from pictrace.catalog.packing import pack
from pictrace.runtime import services

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context) -> dict:
    s = services()
    report = pack(s.store, s.config.partition_rows, s.config.pack_grace_seconds)
    logger.info("pack run", extra=asdict(report))
    return asdict(report)
