"""Wiring: the AWS clients and services a Lambda process uses, built once.

Endpoints come from boto3's own variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_LAMBDA``), which is how the local stack and tests point
the very same handlers at moto and at the local invoke endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import boto3
import botocore.config

from pictrace.adapters.invoke import LambdaInvoker, lambda_client_config
from pictrace.adapters.s3 import S3Store
from pictrace.catalog.batch import ShardCache
from pictrace.catalog.catalog import Catalog
from pictrace.config import Config


@dataclass(frozen=True)
class Services:
    config: Config
    store: S3Store
    catalog: Catalog
    invoker: LambdaInvoker
    cache: ShardCache


def build(config: Config) -> Services:
    if not config.bucket:
        raise RuntimeError("BUCKET_NAME is not set")
    s3 = boto3.client(
        "s3", config=botocore.config.Config(max_pool_connections=64, signature_version="s3v4")
    )
    store = S3Store(s3, config.bucket)
    lam = boto3.client("lambda", config=lambda_client_config(config.score_timeout))
    invoker = LambdaInvoker(
        lam, config.score_function, retries=config.score_retries, concurrency=config.fanout_concurrency
    )
    return Services(config, store, Catalog(store, config), invoker, ShardCache())


@lru_cache(maxsize=1)
def services() -> Services:
    """The process-wide services, from the environment (reused across warm invocations)."""
    return build(Config.from_env())
