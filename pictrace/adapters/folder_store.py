"""A local folder as PicTrace's object store, behind the same interface as :class:`S3Store`.

``pictrace serve`` keeps its catalog here between runs.  What the catalog
relies on from S3 holds here too, across threads and processes:

* a write is atomic: the object is written to a temporary file and moved
  into place with ``os.replace``, so a reader (or a restart after
  ``kill -9``) sees the old object or the new one, never a part;
* conditional writes and deletes (``if_none_match``, ``if_match``) check and
  act under one exclusive lock on the folder (``fcntl.flock``), so of two
  racing writers exactly one wins and the other gets PreconditionFailed;
* listing is consistent: it reads the folder as it is, in S3's key order;
* ETags are the quoted MD5 of the bytes, as S3 gives for a single PUT.

Each object is one file: a JSON header line (ETag, content type) and the
bytes.  Key segments are percent-encoded, so any S3 key maps to a path
inside the folder and "a" and "a/b" can both exist.  Presigned URLs point
at :attr:`url`, the local stack's object endpoint, and carry an expiry and
an HMAC of the method, key and expiry made with a secret kept in the folder.
Data survives the process being killed; it is not fsynced, so a power cut
may lose the last writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote, urlencode

from pictrace.adapters.s3 import PreconditionFailed
from pictrace.errors import NotFound, PayloadTooLarge

SUFFIX = "%obj"  # quote() always escapes "%", so no encoded segment ends like this
STALE_TEMP_SECONDS = 3600.0


class FolderStore:
    def __init__(self, root: str | os.PathLike, url: str = "") -> None:
        self.root = Path(root)
        self.url = url.rstrip("/")
        self._objects = self.root / "objects"
        self._temp = self.root / "tmp"
        for folder in (self._objects, self._temp):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._secret = _secret(self.root / "secret")
        _remove_stale(self._temp)

    # --- reading -------------------------------------------------------------

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; NotFound if absent, PayloadTooLarge above ``max_bytes``."""
        return self.get_with_etag(key, max_bytes=max_bytes)[0]

    def get_with_etag(self, key: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with path.open("rb") as f:
                head = _header(f.readline())
                size = os.fstat(f.fileno()).st_size - f.tell()
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"object {key} is {size} bytes; the limit is {max_bytes}")
                return f.read(), head["etag"]
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no object at {key}") from None

    def head(self, key: str) -> dict | None:
        """``{"etag", "content_type", "size"}`` of the object, or None if there is none."""
        try:
            with self._path(key).open("rb") as f:
                head = _header(f.readline())
                head["size"] = os.fstat(f.fileno()).st_size - f.tell()
                return head
        except (FileNotFoundError, NotADirectoryError):
            return None

    def size(self, key: str) -> int:
        head = self.head(key)
        if head is None:
            raise NotFound(f"no object at {key}")
        return int(head["size"])

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def etag(self, key: str) -> str | None:
        """The object's ETag now, or None if there is no object at ``key``."""
        head = self.head(key)
        return None if head is None else str(head["etag"])

    def list(self, prefix: str, *, start_after: str = "", limit: int | None = None) -> Iterator[str]:
        """Keys under ``prefix`` in lexical (UTF-8 byte) order, after ``start_after``, at most ``limit``."""
        count = 0
        for key in self._keys(prefix):
            if start_after and key.encode() <= start_after.encode():
                continue
            yield key
            count += 1
            if limit is not None and count >= limit:
                return

    def list_etags(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` with its ETag (tells a rewritten object from the old one)."""
        out: dict[str, str] = {}
        for key in self._keys(prefix):
            etag = self.etag(key)
            if etag is not None:  # deleted since the folder was read
                out[key] = etag
        return out

    # --- writing -------------------------------------------------------------

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
        path = self._path(key)
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        temp = self._temp / uuid.uuid4().hex
        with temp.open("wb") as f:
            f.write(json.dumps({"etag": etag, "content_type": content_type}).encode() + b"\n")
            f.write(data)
        try:
            with self._locked():
                current = self.etag(key)
                if if_none_match and current is not None:
                    raise PreconditionFailed(key)
                if if_match is not None and current != if_match:
                    raise PreconditionFailed(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return etag

    def delete(self, key: str) -> None:
        with self._locked():
            self._remove(key)

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete only the version with ``etag``.

        True if deleted, False if the object is already gone; PreconditionFailed
        if it was rewritten since ``etag`` was read.
        """
        with self._locked():
            current = self.etag(key)
            if current is None:
                return False
            if current != etag:
                raise PreconditionFailed(key)
            self._remove(key)
        return True

    def delete_many(self, keys: list[str]) -> None:
        with self._locked():
            for key in keys:
                self._remove(key)

    # --- presigned URLs --------------------------------------------------------

    def presign_get(self, key: str, ttl: int) -> str:
        return self._presign("GET", key, ttl)

    def presign_put(self, key: str, ttl: int, content_type: str) -> str:
        return self._presign("PUT", key, ttl)

    def presign_upload(self, key: str, ttl: int, content_type: str, max_bytes: int) -> dict:
        """A presigned PUT for ``key``: ``{"url", "method", "headers"}``.

        The object endpoint refuses a body over its own ``max_bytes``, so
        a PUT bounds the size here as the POST policy does on S3.
        """
        return {"url": self.presign_put(key, ttl, content_type), "method": "PUT", "headers": {"Content-Type": content_type}}

    def verify(self, method: str, key: str, expires: str, signature: str, now: float | None = None) -> bool:
        """Whether a presigned URL's ``Expires`` and ``Signature`` allow ``method`` on ``key`` now."""
        if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._sign(method, key, expires), signature)

    def _presign(self, method: str, key: str, ttl: int) -> str:
        expires = str(int(time.time()) + int(ttl))
        query = urlencode({"Expires": expires, "Signature": self._sign(method, key, expires)})
        return f"{self.url}/{quote(key, safe='/')}?{query}"

    def _sign(self, method: str, key: str, expires: str) -> str:
        message = "\n".join((method, key, expires)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # --- paths -------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        if not key:
            raise ValueError("an object key cannot be empty")
        *folders, name = key.split("/")
        return self._objects.joinpath(*map(_encode, folders), _encode(name) + SUFFIX)

    def _keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, sorted; only the folder the prefix fixes is walked."""
        *folders, _ = prefix.split("/")
        start = self._objects.joinpath(*map(_encode, folders))
        found = []
        for dirpath, _, files in os.walk(start):
            rel = os.path.relpath(dirpath, self._objects)
            parts = [] if rel == "." else [_decode(p) for p in rel.split(os.sep)]
            for file in files:
                if file.endswith(SUFFIX):
                    key = "/".join([*parts, _decode(file[: -len(SUFFIX)])])
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found, key=lambda k: k.encode())

    def _remove(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _encode(segment: str) -> str:
    if segment == "":
        return "%"  # a lone "%" is never the output of quote()
    encoded = quote(segment, safe="-_.~@+=,")
    # "." and ".." (and hidden names) would mean something to the file system.
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def _decode(name: str) -> str:
    return "" if name == "%" else unquote(name)


def _header(line: bytes) -> dict:
    try:
        head = json.loads(line)
        if isinstance(head, dict) and isinstance(head.get("etag"), str):
            return head
    except ValueError:
        pass
    raise OSError("a stored object has no readable header")


def _secret(path: Path) -> bytes:
    """The folder's signing secret, made once (by whichever process comes first)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another process created it and may still be writing
            data = path.read_bytes()
            if len(data) == 32:
                return data
            time.sleep(0.01)
        raise OSError(f"the signing secret {path} is damaged; delete it to make a new one") from None
    with os.fdopen(fd, "wb") as f:
        data = secrets.token_bytes(32)
        f.write(data)
    return data


def _remove_stale(folder: Path) -> None:
    """Delete temporary files left by a killed writer (old enough not to be anyone's live write)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass
