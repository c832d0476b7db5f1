"""Bucket snapshots: every key with its ETag, and what changed between two."""

from __future__ import annotations


def snapshot(s3, bucket: str) -> dict[str, str]:
    """Every key in ``bucket`` with its ETag."""
    out: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["ETag"]
    return out


def changed_keys(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Keys added, removed, or rewritten with different content."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
