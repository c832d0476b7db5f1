"""The one configuration object, read from the environment.

Every limit PicTrace enforces is here, with its default; the README's
"Limits" table lists the same names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

MB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    bucket: str = ""
    score_function: str = ""
    duplicates_function: str = ""  # the duplicate-groups job POST /duplicates starts
    # bytes and pixels
    max_body_bytes: int = 6 * MB  # a Lambda request payload cannot exceed 6 MB
    max_image_bytes: int = 25 * MB  # images read from S3 (presigned uploads, catalog drops)
    max_pixels: int = 50_000_000
    max_fetch_bytes: int = 20 * MB
    max_page_bytes: int = 2 * MB
    max_page_images: int = 50
    max_urls: int = 100
    # one request's fetches together: bodies held at once, images taken, time
    max_request_fetch_bytes: int = 64 * MB
    max_request_images: int = 100
    max_request_fetch_seconds: float = 15.0  # API Gateway gives up at 29 s; adding needs the rest
    # search
    default_k: int = 5
    max_k: int = 50
    shortlist: int = 24  # candidates each phase-1 signal sends to the rerank, catalog-wide
    partition_rows: int = 65_536  # rows per phase-1 partition (at most 65,536: about 53 MB)
    rerank_batch: int = 48  # shortlisted candidates per phase-2 invocation
    rerank_reserve: float = 3.0  # seconds of the time left that phase 1 leaves to phase 2
    pending_batch: int = 500
    fanout_concurrency: int = 16
    score_retries: int = 3
    score_timeout: float = 25.0
    # seconds kept back from the caller's time left, to merge and answer
    score_margin: float = 1.5
    # fetching
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 10.0
    fetch_total_timeout: float = 20.0
    allow_private_urls: bool = False  # only the local demo stack turns this on
    # HTTP: Access-Control-Allow-Origin of every API response (the template's CorsAllowOrigin)
    cors_allow_origin: str = "*"
    # duplicate groups: pairs the job keeps (at least this score), neighbours
    # kept per image, and the shortlist per phase-1 signal of its searches
    duplicates_floor: float = 0.5
    duplicates_neighbours: int = 10
    duplicates_shortlist: int = 8
    duplicates_page_max: int = 100
    # storage
    presign_ttl: int = 300
    # A local folder to keep objects in instead of the S3 bucket (only `pictrace serve`
    # sets it), and the URL of the endpoint that serves its presigned URLs.
    store_dir: str = ""
    store_url: str = ""
    pack_grace_seconds: int = 300
    list_page_max: int = 1000
    # looks-like model: "" means the file the build writes inside the package
    # (pictrace/model/data/efficientnet_lite0.onnx)
    model_path: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Config":
        """Build from ``PICTRACE_<FIELD>`` variables (plus ``BUCKET_NAME``, ``SCORE_FUNCTION_NAME`` and ``DUPLICATES_FUNCTION_NAME``)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"PICTRACE_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse(f.name, raw, type(getattr(cls, f.name)))
        values.setdefault("bucket", env.get("BUCKET_NAME", ""))
        values.setdefault("score_function", env.get("SCORE_FUNCTION_NAME", ""))
        values.setdefault("duplicates_function", env.get("DUPLICATES_FUNCTION_NAME", ""))
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, kind: type) -> object:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        return kind(raw)
    except ValueError:
        raise ValueError(f"PICTRACE_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
