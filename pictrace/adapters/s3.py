"""S3 as PicTrace's object store: a thin wrapper over a boto3 client.

The catalog logic talks to this small interface (get, put, delete, list,
presign) so it can be read without boto3 details and run against any S3
endpoint: AWS, or the local stack's moto server.
"""

from __future__ import annotations

from typing import Iterator

from botocore.exceptions import ClientError

from pictrace.errors import NotFound, PayloadTooLarge


class PreconditionFailed(Exception):
    """A conditional write lost a race (the object changed or already exists)."""


class S3Store:
    def __init__(self, client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; NotFound if absent, PayloadTooLarge above ``max_bytes``."""
        return self.get_with_etag(key, max_bytes=max_bytes)[0]

    def get_with_etag(self, key: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no object at {key}") from None
            raise
        if max_bytes is not None and resp["ContentLength"] > max_bytes:
            resp["Body"].close()
            raise PayloadTooLarge(
                f"object {key} is {resp['ContentLength']} bytes; the limit is {max_bytes}"
            )
        return resp["Body"].read(), resp["ETag"]

    def size(self, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no object at {key}") from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except NotFound:
            return False

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Write an object; returns its ETag.  Conditional writes raise PreconditionFailed."""
        extra: dict[str, str] = {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            resp = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **extra
            )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PreconditionFailed(key) from None
            if if_match is not None and _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise PreconditionFailed(key) from None  # the version to match is gone: deleted meanwhile
            raise
        return resp["ETag"]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def etag(self, key: str) -> str | None:
        """The object's ETag now (a HEAD), or None if there is no object at ``key``."""
        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete only the version with ``etag`` (S3 conditional delete).

        True if deleted, False if the object is already gone; PreconditionFailed
        if it was rewritten since ``etag`` was read.
        """
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            code = _code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                return False
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PreconditionFailed(key) from None
            raise
        return True

    def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            if chunk:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )

    def list(self, prefix: str, *, start_after: str = "", limit: int | None = None) -> Iterator[str]:
        """Keys under ``prefix`` in lexical order, after ``start_after``, at most ``limit``."""
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        count = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield obj["Key"]
                count += 1
                if limit is not None and count >= limit:
                    return

    def list_etags(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` with its ETag (tells a rewritten object from the old one)."""
        out: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["ETag"]
        return out

    def presign_get(self, key: str, ttl: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
        )

    def presign_put(self, key: str, ttl: int, content_type: str) -> str:
        return self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=ttl,
        )

    def presign_upload(self, key: str, ttl: int, content_type: str, max_bytes: int) -> dict:
        """A presigned POST form for ``key``: ``{"url", "method", "fields"}``.

        A POST rather than a PUT because only a POST policy can bound the
        size: S3 itself refuses a file outside ``content-length-range``
        (``EntityTooLarge``) before anything is stored.  The policy also pins
        the key and the content type.
        """
        post = self.client.generate_presigned_post(
            self.bucket,
            key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=ttl,
        )
        return {"url": post["url"], "method": "POST", "fields": post["fields"]}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
