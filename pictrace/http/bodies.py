"""Request bodies: a raw image, multipart/form-data with a ``file`` field, or JSON.

API Gateway hands binary media types (``image/*``, ``multipart/form-data``,
``application/octet-stream``)
to the function base64-encoded; everything else arrives as text.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from email.message import Message

from pictrace.errors import BadRequest, PayloadTooLarge, UnsupportedFormat


@dataclass(frozen=True)
class Body:
    image: bytes | None = None  # raw upload or the multipart "file" field
    filename: str = ""
    fields: dict | None = None  # JSON object, or the other multipart fields


def raw_body(event: dict, max_bytes: int) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        # base64 is 4/3 the size: refuse before decoding a huge body.
        if len(body) > (max_bytes * 4) // 3 + 4:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is not valid base64") from None
    else:
        data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"request body is {len(data)} bytes; the limit is {max_bytes}")
    return data


def parse_body(event: dict, max_bytes: int) -> Body:
    """Classify and parse a request body by its Content-Type."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if isinstance(v, str)}
    ctype = headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    data = raw_body(event, max_bytes)
    if not data:
        raise BadRequest("request body is empty: send an image, multipart/form-data with 'file', or JSON")
    if media.startswith("image/"):
        return Body(image=data)
    if media == "application/json" or (not media and data.lstrip()[:1] == b"{"):
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        except RecursionError:  # the parser recurses once per level of nesting
            raise BadRequest("request body is JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise BadRequest("JSON body must be an object")
        return Body(fields=obj)
    if media == "multipart/form-data":
        return _multipart(data, ctype)
    if media == "application/octet-stream":
        return Body(image=data)
    raise UnsupportedFormat(
        f"Content-Type {media or '(none)'} is not accepted: use image/*, multipart/form-data or application/json"
    )


def _multipart(data: bytes, ctype: str) -> Body:
    msg = Message()
    msg["content-type"] = ctype
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    parts = data.split(delimiter)
    if len(parts) < 3:
        raise BadRequest("multipart body has no parts")
    fields: dict[str, str] = {}
    image, filename = None, ""
    for part in parts[1:-1]:
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("malformed multipart part")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = Message()
        for line in head.strip(b"\r\n").split(b"\r\n"):
            name, _, value = line.decode("utf-8", "replace").partition(":")  # browsers send UTF-8 file names
            headers[name.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        if name == "file":
            image = content
            filename = str(headers.get_param("filename", "", header="content-disposition") or "")
        elif isinstance(name, str):
            fields[name] = content.decode("utf-8", "replace")
    if image is None and "url" not in fields:
        raise BadRequest("multipart body needs a 'file' field (or a 'url' field)")
    return Body(image=image or None, filename=filename, fields=fields)
