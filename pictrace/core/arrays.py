"""A flat container of named NumPy arrays: what detail features are stored as.

Phase 2 of a search reads the detail features of every shortlisted
candidate, so their parse time is search latency.  A ``.npz`` archive
costs about a millisecond to open (a zip directory and a header per
member); this container is one JSON table and the arrays' bytes back to
back, so reading it is a few ``frombuffer`` calls:

    MAGIC (4 bytes) | table length (uint32 LE) | table (JSON) | payloads

The table lists ``[name, dtype, shape, stored_bytes, zlib]`` per array.
Only plain numeric dtypes are accepted (nothing is ever unpickled), every
length is checked against its shape before anything is allocated, and a
compressed payload is inflated to at most its declared size, so a hostile
file cannot make a reader allocate more than it declares.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Mapping

import numpy as np

from pictrace.errors import CorruptShard

MAGIC = b"PTA1"
# Declared sizes beyond this are refused before any allocation.
MAX_ARRAY_BYTES = 64 * 1024 * 1024
_DTYPES = {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}


def is_container(data: bytes) -> bool:
    """Whether ``data`` starts like a container (rather than, say, an ``.npz``)."""
    return data[:4] == MAGIC


def pack(arrays: Mapping[str, np.ndarray], compress: frozenset[str] = frozenset()) -> bytes:
    """The container of ``arrays``; those named in ``compress`` are zlib-deflated."""
    table, payloads = [], []
    for name, array in arrays.items():
        a = np.ascontiguousarray(array)
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dtype.str not in _DTYPES:
            raise ValueError(f"array {name!r} has unsupported dtype {a.dtype}")
        raw = a.astype(dtype, copy=False).tobytes()
        deflate = name in compress
        body = zlib.compress(raw, 6) if deflate else raw
        table.append([name, dtype.str, list(a.shape), len(body), deflate])
        payloads.append(body)
    head = json.dumps(table, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(head)), head, *payloads])


def unpack(data: bytes, what: str = "container") -> dict[str, np.ndarray]:
    """The arrays of a container, read-only; anything malformed raises CorruptShard."""
    if not is_container(data) or len(data) < 8:
        raise CorruptShard(f"not a PicTrace {what} file")
    (length,) = struct.unpack_from("<I", data, 4)
    start = 8 + length
    if start > len(data):
        raise CorruptShard(f"{what} file is truncated")
    try:
        table = json.loads(data[8:start])
    except ValueError:
        raise CorruptShard(f"{what} file has an unreadable table") from None
    if not isinstance(table, list):
        raise CorruptShard(f"{what} file has an unreadable table")
    view = memoryview(data)
    out: dict[str, np.ndarray] = {}
    offset = start
    for entry in table:
        name, dtype, shape, stored, deflate = _entry(entry, what)
        if offset + stored > len(data):
            raise CorruptShard(f"{what} file is truncated in {name!r}")
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if expected > MAX_ARRAY_BYTES:
            raise CorruptShard(f"{what} array {name!r} declares {expected} bytes")
        body = view[offset : offset + stored]
        offset += stored
        if deflate:
            inflater = zlib.decompressobj()
            try:
                body = inflater.decompress(body, expected)
            except zlib.error:
                raise CorruptShard(f"{what} array {name!r} does not inflate") from None
            if inflater.unconsumed_tail or not inflater.eof:
                raise CorruptShard(f"{what} array {name!r} inflates beyond its shape")
        if len(body) != expected:
            raise CorruptShard(f"{what} array {name!r} disagrees with its shape")
        out[name] = np.frombuffer(body, dtype=dtype).reshape(shape)
    if offset != len(data):
        raise CorruptShard(f"{what} file has trailing bytes")
    return out


def _entry(entry: object, what: str) -> tuple[str, str, tuple[int, ...], int, bool]:
    ok = (
        isinstance(entry, list)
        and len(entry) == 5
        and isinstance(entry[0], str)
        and entry[1] in _DTYPES
        and isinstance(entry[2], list)
        and len(entry[2]) <= 4
        and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ARRAY_BYTES for d in entry[2])
        and isinstance(entry[3], int)
        and 0 <= entry[3] <= MAX_ARRAY_BYTES
        and isinstance(entry[4], bool)
    )
    if not ok:
        raise CorruptShard(f"{what} file has a malformed table entry")
    return entry[0], entry[1], tuple(entry[2]), entry[3], entry[4]
