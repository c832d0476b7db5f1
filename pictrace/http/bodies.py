"""Request bodies: a raw image, multipart/form-data with a ``file`` field, or JSON.

API Gateway hands binary media types (``image/*``, ``multipart/form-data``,
``application/octet-stream``)
to the function base64-encoded; everything else arrives as text.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value

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


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str  # cleaned; "" for a plain field
    content: bytes
    is_file: bool  # sent with a filename parameter, as file inputs are


def form_parts(data: bytes, ctype: str) -> list[Part]:
    """Every named part of a multipart/form-data body, in order."""
    msg = Message()
    msg["content-type"] = ctype
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadRequest("multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    parts = data.split(delimiter)
    if len(parts) < 3:
        raise BadRequest("multipart body has no parts")
    out: list[Part] = []
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
        name = _disposition_param(headers, "name")
        if name:
            has_file = any(k in ("filename", "filename*") for k, _ in headers.get_params([], header="content-disposition")[1:])
            out.append(Part(name, clean_filename(_disposition_param(headers, "filename")), content, has_file))
    return out


def _multipart(data: bytes, ctype: str) -> Body:
    fields: dict[str, str] = {}
    image, filename = None, ""
    for part in form_parts(data, ctype):
        if part.name == "file":
            image, filename = part.content, part.filename
        else:
            fields[part.name] = part.content.decode("utf-8", "replace")
    if image is None and "url" not in fields:
        raise BadRequest("multipart body needs a 'file' field (or a 'url' field)")
    return Body(image=image or None, filename=filename, fields=fields)


MAX_FILENAME = 200


def _disposition_param(headers: Message, key: str) -> str:
    """A Content-Disposition parameter as text, "" if absent.

    An RFC 2231 ``key*=charset'lang'text`` value (which the email package
    returns as a tuple) is decoded, and wins over a plain ``key=`` as RFC 6266
    asks: clients send the plain one as an ASCII fallback.
    """
    plain, extended = "", ""
    for name, value in headers.get_params([], header="content-disposition")[1:]:
        if name != key:
            continue
        if isinstance(value, tuple):
            extended = extended or collapse_rfc2231_value(value, errors="replace")
        else:
            plain = plain or value
    return extended or plain


def clean_filename(raw: str) -> str:
    """The last path component of a client's file name, without control or format characters.

    A browser on Windows may send the whole ``C:\\...\\a.jpg`` path; bidi
    overrides and other invisible characters would let a name look like
    another in a listing. At most :data:`MAX_FILENAME` characters.
    """
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    kept = (" " if unicodedata.category(ch)[0] == "Z" else ch for ch in base)
    visible = "".join(ch for ch in kept if unicodedata.category(ch)[0] != "C")
    return visible.strip()[:MAX_FILENAME]
