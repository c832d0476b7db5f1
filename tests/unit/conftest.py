"""Shared image fixtures: real photographs and byte-level image builders.

Builders are handed out as fixtures (functions) so any test module can use
them without importing this file.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from skimage import data as samples


@functools.cache
def _sample_bgr(name: str) -> np.ndarray:
    rgb = getattr(samples, name)()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.fixture
def photo_bgr() -> np.ndarray:
    """A real photograph (skimage's 'chelsea', 451x300, not square), BGR uint8."""
    return _sample_bgr("chelsea").copy()


@pytest.fixture
def astronaut_bgr() -> np.ndarray:
    """A second, unrelated real photograph (skimage's 'astronaut', 512x512), BGR uint8."""
    return _sample_bgr("astronaut").copy()


def encode_image(img: np.ndarray, ext: str, **params: int) -> bytes:
    """Encode with OpenCV; ``params`` name ``cv2.IMWRITE_*`` flags, e.g. ``jpeg_quality=90``."""
    flags: list[int] = []
    for name, value in params.items():
        flags += [getattr(cv2, "IMWRITE_" + name.upper()), int(value)]
    ok, buf = cv2.imencode(ext, img, flags)
    assert ok, f"OpenCV could not encode {ext}"
    return buf.tobytes()


@pytest.fixture
def encode() -> Callable[..., bytes]:
    """``encode(img, ext, **params) -> bytes``; see :func:`encode_image`."""
    return encode_image


def build_exif_block(orientation: int, *, big_endian: bool = False) -> bytes:
    """A TIFF-structured EXIF block whose first directory holds an Orientation tag.

    A Make entry precedes it so a reader has to walk the directory.
    """
    e = ">" if big_endian else "<"
    magic = b"MM\0*" if big_endian else b"II*\0"
    make = struct.pack(e + "HHI", 0x010F, 2, 4) + b"Cam\0"  # ASCII, fits inline
    orient = struct.pack(e + "HHIH", 0x0112, 3, 1, orientation) + b"\0\0"
    return magic + struct.pack(e + "IH", 8, 2) + make + orient + struct.pack(e + "I", 0)


def jpeg_with_exif(jpeg: bytes, orientation: int, *, big_endian: bool = False) -> bytes:
    """Insert an EXIF APP1 segment carrying ``orientation`` right after SOI."""
    assert jpeg[:2] == b"\xff\xd8"
    payload = b"Exif\0\0" + build_exif_block(orientation, big_endian=big_endian)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.fixture
def exif_block() -> Callable[..., bytes]:
    """``exif_block(orientation, big_endian=False) -> bytes`` (TIFF structure, no APP1 prefix)."""
    return build_exif_block


@pytest.fixture
def with_exif() -> Callable[..., bytes]:
    """``with_exif(jpeg, orientation, big_endian=False) -> bytes``."""
    return jpeg_with_exif


def tiff_image(
    pixels: np.ndarray,
    *,
    big_endian: bool = False,
    long_dims: bool = False,
    bigtiff: bool = False,
    orientation: int | None = None,
) -> bytes:
    """An uncompressed single-strip TIFF of grey or RGB ``pixels`` (uint8 or uint16).

    ``pixels`` are in file order (RGB, not BGR). ``long_dims`` stores width
    and height as LONG instead of SHORT; ``bigtiff`` writes the 64-bit variant.
    """
    e = ">" if big_endian else "<"
    height, width = pixels.shape[:2]
    spp = 1 if pixels.ndim == 2 else pixels.shape[2]
    bits = pixels.dtype.itemsize * 8
    body = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(e)).tobytes()
    slot = 8 if bigtiff else 4  # size of an entry's value field

    def inline(kind: int, *values: int) -> bytes:
        layout = {3: "H", 4: "I"}[kind] * len(values)
        return struct.pack(e + layout, *values).ljust(slot, b"\0")

    dim_kind = 4 if long_dims else 3
    bps = struct.pack(e + "H" * spp, *[bits] * spp)
    bps_inline = len(bps) <= slot
    fields = [
        (256, dim_kind, 1, inline(dim_kind, width)),
        (257, dim_kind, 1, inline(dim_kind, height)),
        (258, 3, spp, None if not bps_inline else bps.ljust(slot, b"\0")),
        (259, 3, 1, inline(3, 1)),
        (262, 3, 1, inline(3, 2 if spp == 3 else 1)),
        (273, 4, 1, None),  # StripOffsets: filled in below
        (277, 3, 1, inline(3, spp)),
        (278, 4, 1, inline(4, height)),
        (279, 4, 1, inline(4, len(body))),
    ]
    if orientation is not None:
        fields.append((274, 3, 1, inline(3, orientation)))
    fields.sort()

    header_size = 16 if bigtiff else 8
    count_layout, offset_layout, entry_size = ("Q", "Q", 20) if bigtiff else ("H", "I", 12)
    ifd_size = struct.calcsize(count_layout) + len(fields) * entry_size + slot
    extra_at = header_size + ifd_size
    pixels_at = extra_at + (0 if bps_inline else len(bps))

    magic = b"MM" if big_endian else b"II"
    if bigtiff:
        out = magic + struct.pack(e + "HHHQ", 43, 8, 0, header_size)
    else:
        out = magic + struct.pack(e + "HI", 42, header_size)
    out += struct.pack(e + count_layout, len(fields))
    for tag, kind, count, value in fields:
        if tag == 273:
            value = inline(4, pixels_at)
        elif value is None:
            value = struct.pack(e + offset_layout, extra_at)
        out += struct.pack(e + "HH" + offset_layout, tag, kind, count) + value
    out += struct.pack(e + offset_layout, 0)
    if not bps_inline:
        out += bps
    return out + body


@pytest.fixture
def make_tiff() -> Callable[..., bytes]:
    """``make_tiff(pixels, big_endian=, long_dims=, bigtiff=, orientation=) -> bytes``."""
    return tiff_image
