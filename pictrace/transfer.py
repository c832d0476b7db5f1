"""Moving a whole catalog between stacks: ``pictrace export DIR`` and ``pictrace import DIR``.

Both go through the HTTP API (:class:`~pictrace.client.Client`), so they
work the same against the local stack and a deployed one, with nothing but
the API's URL and key: no bucket access, no AWS credentials.

An export folder holds every original under ``images/<id>.<ext>`` and
``pictrace-export.json``: one entry per image with its record (name, the
URLs it came from, when it was added, its ``meta``).  The manifest is
written last, by rename, so a folder without it is an export that did not
finish; running the export again resumes it (files already there whose
sha256 is their id are kept).

Features are not copied: the target computes them from the original bytes
when it adds each image, in its own index format, the same features the
source has for the same bytes.  Taking feature arrays from a file would
let the file plant rows that do not describe the images they name.

An import checks the whole folder before it sends anything: the manifest's
format, every entry's id, file name and size, and that each file's sha256
is its id.  Then it adds the images one by one with ``POST /images``; an
image's id is the sha256 of its bytes, so an image already in the target is
answered as such and nothing is duplicated: importing twice is importing
once.  Each add is atomic on the target (everything is computed before the
first write), so an import that stops half-way leaves complete images and
nothing else, and running it again adds the rest.  Images already in the
target keep their record as it is there; ``added_at`` is the import's time
(the source's is in the manifest).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pictrace.client import ApiError, Client, ClientError, Unreachable, multipart

MANIFEST = "pictrace-export.json"
IMAGES = "images"
FORMAT = "pictrace-export"
VERSION = 1
MAX_IMAGE_BYTES = 25 * 1024 * 1024  # what the API takes through an upload (MAX_IMAGE_BYTES)
# A record's links are signed for this export's reader only; they are not part of what moves.
_NOT_COPIED = {"stored_url", "thumb_url", "expires_in", "created", "key"}
_ID = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[a-z]{3,4}")


class TransferError(ClientError):
    """An export folder that cannot be written or imported (named with the reason)."""


@dataclass
class Report:
    """What an export or an import did, image by image."""

    done: list[str] = field(default_factory=list)  # exported, or added to the target
    kept: list[str] = field(default_factory=list)  # already there (a file of an earlier run; an image in the target)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)

    def to_dict(self) -> dict:
        return {"done": self.done, "kept": self.kept, "failed": [{"id": i, "reason": r} for i, r in self.failed]}


# --- export ---------------------------------------------------------------------


def export_catalog(api: Client, folder: str | Path, jobs: int = 4, on_done: Callable[[str], None] | None = None) -> Report:
    """Copy every image of the catalog behind ``api`` into ``folder``, then write its manifest."""
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise TransferError(f"{root} is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / IMAGES).is_dir():
        raise TransferError(f"{root} is neither empty nor an earlier export; choose an empty folder")
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    records = list(api.all_images())
    report = Report()

    def one(record: dict) -> tuple[dict, str, str]:
        try:
            return record, *_export_one(api, root, record)
        except Unreachable:
            raise
        except (ClientError, OSError) as exc:
            return record, "failed", str(exc)

    entries = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for record, outcome, detail in pool.map(one, records):
            if outcome == "failed":
                report.failed.append((record["id"], detail))
            else:
                (report.done if outcome == "done" else report.kept).append(record["id"])
                entries.append(_entry(record, detail))
            if on_done:
                on_done(record.get("name") or record["id"])
    body = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": time.time(),
        "source": api.base_url,
        "count": len(entries),
        "images": entries,
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
    os.replace(tmp, root / MANIFEST)
    return report


def _entry(record: dict, file: str) -> dict:
    return {"id": record["id"], "file": file, "record": {k: v for k, v in record.items() if k not in _NOT_COPIED}}


def _export_one(api: Client, root: Path, record: dict) -> tuple[str, str]:
    """("done" or "kept", the file's name inside the folder) for one record."""
    image_id = record["id"]
    ext = _extension(record)
    name = f"{IMAGES}/{image_id}.{ext}"
    path = root / name
    if path.is_file() and _sha256(path.read_bytes()) == image_id:
        return "kept", name
    data = _download(api, record)
    if _sha256(data) != image_id:
        raise TransferError(f"the bytes stored for {image_id} do not hash to it (a damaged original)")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "done", name


def _extension(record: dict) -> str:
    ext = {"jpeg": "jpg", "tiff": "tif"}.get(record.get("format", ""), record.get("format", ""))
    return ext if _EXT.fullmatch(ext or "") else "bin"


def _download(api: Client, record: dict) -> bytes:
    """The original's bytes, from its presigned link; a link that expired meanwhile is signed again once."""
    url = record.get("stored_url")
    for attempt in range(2):
        if not url or attempt:
            url = api.get(record["id"])["stored_url"]
        try:
            with urllib.request.urlopen(url, timeout=api.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code != 403 or attempt:
                raise TransferError(f"storage refused the original of {record['id']} ({err.code} {err.reason})") from None
        except (urllib.error.URLError, OSError) as err:
            raise Unreachable(url.split("?", 1)[0], str(getattr(err, "reason", err))) from None
    raise AssertionError("unreachable")


# --- import ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: str
    path: Path
    name: str
    meta: dict


def read_export(folder: str | Path) -> list[Entry]:
    """The images of an export folder, every one checked; TransferError naming the first problem."""
    root = Path(folder)
    try:
        body = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise TransferError(f"{root} has no {MANIFEST}: not an export, or one that did not finish") from None
    except (OSError, ValueError) as exc:
        raise TransferError(f"{root / MANIFEST} cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise TransferError(f"{root / MANIFEST} is not a PicTrace export")
    if body.get("version") != VERSION:
        raise TransferError(f"{root / MANIFEST} is version {body.get('version')!r}; this pictrace reads version {VERSION}")
    images = body.get("images")
    if not isinstance(images, list):
        raise TransferError(f"{root / MANIFEST} lists no images")
    entries, problems = [], []
    for raw in images:
        try:
            entries.append(_check(root, raw))
        except TransferError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TransferError(f"nothing imported: {problems[0]}{more}")
    return entries


def _check(root: Path, raw: object) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not _ID.fullmatch(raw["id"]):
        raise TransferError("an entry has no valid id")
    image_id = raw["id"]
    file = raw.get("file")
    # Only the file name an export writes: nothing outside images/, no other name.
    if not isinstance(file, str) or not re.fullmatch(rf"{IMAGES}/{image_id}\.[a-z]{{3,4}}", file):
        raise TransferError(f"{image_id}: its file must be {IMAGES}/{image_id}.<ext>, not {file!r}")
    path = root / file
    if not path.is_file():
        raise TransferError(f"{image_id}: {file} is missing")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise TransferError(f"{image_id}: {file} is larger than {MAX_IMAGE_BYTES} bytes")
    if _sha256(path.read_bytes()) != image_id:
        raise TransferError(f"{image_id}: {file} does not hash to its id (changed or damaged)")
    record = raw.get("record") if isinstance(raw.get("record"), dict) else {}
    name = record.get("name") if isinstance(record.get("name"), str) else ""
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    return Entry(image_id, path, name, meta)


def import_catalog(api: Client, folder: str | Path, jobs: int = 4, on_done: Callable[[str], None] | None = None) -> Report:
    """Add every image of an export folder to the catalog behind ``api``; see the module's description."""
    entries = read_export(folder)
    report = Report()

    def one(entry: Entry) -> tuple[Entry, str, str]:
        try:
            answer = _add(api, entry)
        except Unreachable:
            raise
        except ApiError as exc:
            return entry, "failed", str(exc)
        ids = answer.get("ids") or []
        if ids != [entry.id]:
            return entry, "failed", f"the target answered with ids {ids}"
        created = bool(answer.get("images") and answer["images"][0].get("created"))
        return entry, "done" if created else "kept", ""

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for entry, outcome, reason in pool.map(one, entries):
            if outcome == "failed":
                report.failed.append((entry.id, reason))
            else:
                (report.done if outcome == "done" else report.kept).append(entry.id)
            if on_done:
                on_done(entry.name or entry.id)
    return report


def _add(api: Client, entry: Entry) -> dict:
    """``POST /images`` with one image's bytes, name and meta (an upload first for a large file)."""
    data = entry.path.read_bytes()
    name = entry.name or entry.path.name
    # A multipart file name keeps only its last path component; a name with a
    # folder in it (a catalog drop's "drops/moon.jpg") travels as a JSON field.
    if len(data) > api.direct_limit or "/" in name or "\\" in name:
        key = api.upload(data, mimetypes.guess_type(entry.path.name)[0] or "image/jpeg")
        body: dict = {"s3_key": key, "name": name}
        if entry.meta:
            body["meta"] = entry.meta
        return api.call("POST", "/images", body=body)
    payload, ctype = multipart(data, name)
    if entry.meta:
        payload, ctype = _with_meta(payload, ctype, entry.meta)
    return api.call("POST", "/images", body=payload, ctype=ctype)


def _with_meta(payload: bytes, ctype: str, meta: dict) -> tuple[bytes, str]:
    """A multipart body with a ``meta`` field (JSON text) added before its closing boundary."""
    boundary = ctype.split("boundary=", 1)[1]
    closing = f"--{boundary}--\r\n".encode()
    field_ = f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n{json.dumps(meta)}\r\n'.encode()
    return payload[: -len(closing)] + field_ + closing, ctype


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
