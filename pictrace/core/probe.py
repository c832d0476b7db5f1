"""Identify an image by its magic bytes and read its size from the header.

Nothing here decodes pixels: every reader looks at a few dozen bytes (or walks
segment/chunk headers by their lengths), so probing a huge or hostile file is
cheap and lets callers enforce a pixel cap before any allocation.

Supported formats are JPEG, PNG, WebP, BMP, TIFF (classic and BigTIFF) and
GIF. Well-known non-images and unsupported image formats are named in the
error so a user learns what they actually sent.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import NoReturn

from pictrace.errors import CorruptImage, InvalidImage, UnsupportedFormat

FORMAT_NAMES: dict[str, str] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WebP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
}
SUPPORTED = ", ".join(FORMAT_NAMES.values())

# EXIF/TIFF orientation values that swap width and height when displayed.
_TRANSPOSING = frozenset({5, 6, 7, 8})


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says about an image.

    ``width`` and ``height`` are the stored pixel grid as the header records
    it. ``orientation`` is the EXIF (or TIFF) orientation tag, 1..8, and is 1
    when the file carries none; :attr:`oriented_size` is the size once that
    orientation has been applied.

    The other fields say what decoding will cost, as far as the header
    tells, so a caller can refuse an image before the decoder allocates
    anything: ``channels`` and ``sample_bytes`` are the most samples per
    pixel and bytes per sample the decoder may produce when it keeps alpha
    and depth; ``scans`` is the number of JPEG scans (each one a pass over
    the whole image's coefficients); ``buffer_bytes`` is what the decoder
    holds besides its output (a progressive JPEG's coefficients, a GIF's
    canvas, a TIFF strip or tile). They do not take part in equality.
    """

    format: str
    width: int
    height: int
    orientation: int = 1
    channels: int = field(default=3, compare=False)
    sample_bytes: int = field(default=1, compare=False)
    scans: int = field(default=1, compare=False)
    buffer_bytes: int = field(default=0, compare=False)

    @property
    def pixels(self) -> int:
        """Number of pixels in the stored grid."""
        return self.width * self.height

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(width, height)`` as displayed, after the orientation tag."""
        if self.orientation in _TRANSPOSING:
            return self.height, self.width
        return self.width, self.height


def probe(data: bytes) -> ImageInfo:
    """Identify ``data`` and read its dimensions without decoding pixels.

    Raises :class:`UnsupportedFormat` for recognised non-images and image
    formats outside the supported set, :class:`InvalidImage` for empty or
    unrecognisable bytes, and :class:`CorruptImage` when a supported format's
    header is cut short, malformed, or declares a zero size.
    """
    if not data:
        raise InvalidImage("not an image: the input is empty")
    fmt = _sniff(data)
    info = _READERS[fmt](data)
    if info.width <= 0 or info.height <= 0:
        raise CorruptImage(
            f"{FORMAT_NAMES[fmt]} header declares an empty image ({info.width}x{info.height})",
            format=fmt,
        )
    return info


# --- identification ---------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")

# Prefixes of supported formats, longest first within a family; used both to
# identify and to tell a cut-short file from an unknown one.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (_PNG_SIGNATURE, "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    *((magic, "tiff") for magic in _TIFF_MAGICS),
    (b"BM", "bmp"),
)

_FOREIGN_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop PSD"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
)

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# How far into a text document to look for its root element.
_TEXT_SNIFF_BYTES = 4096


def _sniff(data: bytes) -> str:
    """Return the supported format of ``data`` or raise why it is not one."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data.startswith(b"RIFF"):
        if len(data) < 12:
            _cut_short("webp")
        if data[8:12] == b"WEBP":
            return "webp"
        _unsupported(f"RIFF {data[8:12].decode('latin-1')!r} data")
    foreign = _foreign_name(data)
    if foreign:
        _unsupported(foreign)
    for magic, fmt in (*_SIGNATURES, (b"RIFF", "webp")):
        if len(data) >= 2 and magic.startswith(data):
            _cut_short(fmt)
    raise InvalidImage("not an image: the data matches no known image format")


def _foreign_name(data: bytes) -> str | None:
    """Name the kind of a recognisable non-supported file, else ``None``."""
    for magic, name in _FOREIGN_SIGNATURES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return _iso_media_name(data)
    return _markup_name(data[:_TEXT_SNIFF_BYTES])


def _iso_media_name(data: bytes) -> str:
    """Name an ISO base media file (HEIF, AVIF, MP4, ...) from its ftyp box."""
    box_size = int.from_bytes(data[:4], "big")
    box = data[8 : max(box_size, 12)]
    # Major brand first, then compatible brands after the 4-byte minor version.
    brands = {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIC/HEIF"
    return f"ISO media ({box[:4].decode('latin-1')!r})"


def _markup_name(head: bytes) -> str | None:
    """Name SVG, HTML or XML text, tolerating a BOM and leading whitespace."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if not text.startswith(b"<"):
        return None
    if b"<svg" in text:
        return "SVG"
    if text.startswith(b"<!doctype html") or b"<html" in text or b"<head" in text or b"<body" in text:
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    return None


def _unsupported(what: str) -> NoReturn:
    raise UnsupportedFormat(f"{what} is not supported; supported: {SUPPORTED}", detected=what)


def _cut_short(fmt: str) -> NoReturn:
    raise CorruptImage(f"{FORMAT_NAMES[fmt]} header is cut short", format=fmt)


def _read(data: bytes, offset: int, layout: str, fmt: str) -> tuple[int, ...]:
    """Unpack ``layout`` at ``offset``, or report the header as cut short."""
    if offset < 0 or offset + struct.calcsize(layout) > len(data):
        _cut_short(fmt)
    return struct.unpack_from(layout, data, offset)


def _corrupt(fmt: str, problem: str) -> NoReturn:
    raise CorruptImage(f"{FORMAT_NAMES[fmt]} header is malformed: {problem}", format=fmt)


# --- per-format readers: each returns the ImageInfo of its format -----------------

# Samples per pixel of each PNG colour type once a palette is expanded; a
# tRNS chunk adds alpha to the types that have none.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _png_size(data: bytes) -> ImageInfo:
    length, kind, width, height, depth, colour = _read(data, 8, ">I4sIIBB", "png")
    if kind != b"IHDR" or length != 13:
        _corrupt("png", "the first chunk is not IHDR")
    chunks = _png_chunks_before_pixels(data, 8 + 8 + 13 + 4)
    channels = _PNG_CHANNELS.get(colour, 4)
    if b"tRNS" in chunks or channels == 2:
        channels = 4  # the decoder gives grey+alpha and transparent colours as BGRA
    # An animated PNG is composed on a canvas the size of the image.
    buffer = width * height * channels * 2 if b"acTL" in chunks else 0
    exif = chunks.get(b"eXIf")
    orientation = exif_orientation(exif) if exif is not None else 1
    return ImageInfo("png", width, height, orientation, channels, 2 if depth == 16 else 1, 1, buffer)


def _png_chunks_before_pixels(data: bytes, pos: int) -> dict[bytes, bytes]:
    """The first chunk of each kind placed before the image data, by kind."""
    chunks: dict[bytes, bytes] = {}
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in (b"IDAT", b"IEND"):
            break
        chunks.setdefault(kind, data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return chunks


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> ImageInfo:
    """Walk marker segments up to the frame header (SOFn)."""
    pos, orientation = 2, 1
    while True:
        (byte,) = _read(data, pos, "B", "jpeg")
        if byte != 0xFF:
            _corrupt("jpeg", f"expected a marker at byte {pos}")
        while byte == 0xFF:  # fill bytes may pad before a marker
            pos += 1
            (byte,) = _read(data, pos, "B", "jpeg")
        marker, pos = byte, pos + 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            _corrupt("jpeg", "no frame header before the image data")
        (length,) = _read(data, pos, ">H", "jpeg")
        if length < 2:
            _corrupt("jpeg", f"segment length {length} at byte {pos}")
        if marker in _JPEG_SOF:
            return _jpeg_frame(data, marker, pos, orientation)
        if marker == 0xE1 and orientation == 1:
            segment = data[pos + 2 : pos + length]
            if segment.startswith(b"Exif\0\0"):
                orientation = exif_orientation(segment[6:])
        pos += length


# Frame headers that start a progressive image (SOF2, SOF6, SOF10, SOF14).
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# A marker as libjpeg finds one: 0xFF, then a byte that is neither a
# stuffed zero, another fill 0xFF, nor a restart (which stays inside a scan).
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Markers walked after the frame header before counting gives way to a
# byte search; a real file has a few per scan.
_JPEG_MAX_MARKERS = 10_000


def _jpeg_frame(data: bytes, marker: int, pos: int, orientation: int) -> ImageInfo:
    """The frame header at ``pos`` (its length field) and the scans that follow it."""
    _precision, height, width, n_components = _read(data, pos + 2, ">BHHB", "jpeg")
    sampling = [data[c + 1] for c in range(pos + 8, min(pos + 8 + 3 * n_components, len(data) - 1), 3)]
    scans = _jpeg_scans(data, pos)
    buffer = 0
    if sampling and (marker in _JPEG_PROGRESSIVE or scans > 1):
        # Several scans make libjpeg keep every coefficient of the image
        # (64 per block, 2 bytes each), blocks padded to whole MCUs.
        h_max = max(max(f >> 4 for f in sampling), 1)
        v_max = max(max(f & 15 for f in sampling), 1)
        mcus = -(-width // (8 * h_max)) * -(-height // (8 * v_max))
        buffer = mcus * sum((f >> 4) * (f & 15) for f in sampling) * 128
    return ImageInfo("jpeg", width, height, orientation, 3, 1, scans, buffer)


def _jpeg_scans(data: bytes, pos: int) -> int:
    """Number of scans the decoder reads after the segment at ``pos``, up to the end of the image.

    Segments are skipped by their length and entropy-coded data up to the
    next marker, as libjpeg does, so bytes inside metadata or after the
    image (a video appended to a motion photo) are not taken for scans.
    Past :data:`_JPEG_MAX_MARKERS` markers every remaining FF DA pair counts,
    which can only overcount.
    """
    scans = 0
    for _ in range(_JPEG_MAX_MARKERS):
        found = _JPEG_NEXT_MARKER.search(data, pos)
        if found is None:
            return scans
        marker, pos = data[found.end() - 1], found.end()
        if marker == _JPEG_EOI:
            return scans
        if marker in _JPEG_STANDALONE:
            continue
        scans += marker == _JPEG_SOS
        pos += max(int.from_bytes(data[pos : pos + 2], "big"), 2)
    return scans + data.count(b"\xff\xda", pos)


def _gif_size(data: bytes) -> ImageInfo:
    # The logical screen is the canvas every frame is drawn on, and the size
    # the decoder produces. The decoder composes frames on a BGRA canvas and
    # converts it to its output, which is the same peak as a BGRA image and
    # its copy: no buffer beyond that.
    width, height = _read(data, 6, "<HH", "gif")
    return ImageInfo("gif", width, height, 1, 4)


# DIB header sizes: OS/2 1.x (12), OS/2 2.x (16..64), Windows v1/v2/v3/v4/v5.
_BMP_INFO_SIZES = frozenset({16, 40, 52, 56, 64, 108, 124})


def _bmp_size(data: bytes) -> ImageInfo:
    (header_size,) = _read(data, 14, "<I", "bmp")
    if header_size == 12:
        width, height = _read(data, 18, "<HH", "bmp")
        return ImageInfo("bmp", width, height)
    if header_size not in _BMP_INFO_SIZES:
        _corrupt("bmp", f"unknown DIB header size {header_size}")
    width, height, _planes, bits = _read(data, 18, "<iiHH", "bmp")
    if width < 0:
        _corrupt("bmp", f"negative width {width}")
    # Only 32-bit bitmaps can carry alpha; negative height marks a top-down bitmap.
    return ImageInfo("bmp", width, abs(height), 1, 4 if bits == 32 else 3)


_WEBP_ALPHA, _WEBP_EXIF, _WEBP_ANIMATION = 0x10, 0x08, 0x02


def _webp_size(data: bytes) -> ImageInfo:
    (kind,) = _read(data, 12, "4s", "webp")
    if kind == b"VP8X":
        (flags,) = _read(data, 20, "B", "webp")
        (size,) = _read(data, 24, "6s", "webp")
        width = 1 + int.from_bytes(size[:3], "little")
        height = 1 + int.from_bytes(size[3:], "little")
        orientation = _webp_orientation(data) if flags & _WEBP_EXIF else 1
        channels = 4 if flags & (_WEBP_ALPHA | _WEBP_ANIMATION) else 3
        # Animations are composed on a BGRA canvas before the first frame is copied out.
        buffer = width * height * 4 if flags & _WEBP_ANIMATION else 0
        return ImageInfo("webp", width, height, orientation, channels, 1, 1, buffer)
    if kind == b"VP8 ":
        start_code, width, height = _read(data, 23, "<3sHH", "webp")
        if start_code != b"\x9d\x01\x2a":
            _corrupt("webp", "VP8 key frame start code missing")
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)  # top bits are scaling hints
    if kind == b"VP8L":
        signature, bits = _read(data, 20, "<BI", "webp")
        if signature != 0x2F:
            _corrupt("webp", "VP8L signature missing")
        alpha = bits >> 28 & 1  # the encoder's hint that some pixel is not opaque
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1, 4 if alpha else 3)
    _corrupt("webp", f"unknown first chunk {kind!r}")


def _webp_orientation(data: bytes) -> int:
    """Orientation from the EXIF chunk of an extended WebP, else 1."""
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        if kind == b"EXIF":
            payload = data[pos + 8 : pos + 8 + length]
            # Some writers keep the JPEG APP1 identifier; the chunk should not have it.
            return exif_orientation(payload.removeprefix(b"Exif\0\0"))
        pos += 8 + length + (length & 1)  # chunks are padded to even length
    return 1


_TAG_WIDTH, _TAG_HEIGHT, _TAG_BITS, _TAG_PHOTOMETRIC, _TAG_ORIENTATION = 256, 257, 258, 262, 274
_TAG_SAMPLES, _TAG_ROWS_PER_STRIP, _TAG_TILE_WIDTH, _TAG_TILE_LENGTH = 277, 278, 322, 323
# TIFF field types that can hold an integer dimension: BYTE, SHORT, LONG, and
# LONG8, which only BigTIFF defines (a classic file's 4-byte value field
# cannot hold it, so there it is an unknown type like any other).
_INTEGER_TYPES = {1: "B", 3: "H", 4: "I"}
_BIGTIFF_INTEGER_TYPES = {**_INTEGER_TYPES, 16: "Q"}
# Longest array field read (BitsPerSample and friends have one value per sample).
_MAX_VALUES = 16
# libtiff refuses directories of more entries than this, and so do we: it
# also bounds the work of probing a directory.
_MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Directory:
    """Integer fields of one TIFF image directory, with the tags that occur more than once.

    ``fields`` maps a tag to its values as the *first* entry with that tag
    gives them (libtiff ignores later duplicates). Entries of unknown or
    non-integer types, and arrays longer than ``_MAX_VALUES``, are skipped.
    """

    fields: dict[int, tuple[int, ...]]
    duplicated: frozenset[int]

    def single(self, tag: int, default: int | None = None) -> int | None:
        """The value of a single-valued field, else ``default``."""
        values = self.fields.get(tag)
        return values[0] if values is not None and len(values) == 1 else default


# Tags that decide how much the decoder allocates or how it lays pixels out:
# ImageWidth, ImageLength, BitsPerSample, Compression, Photometric,
# StripOffsets, Orientation, SamplesPerPixel, RowsPerStrip, StripByteCounts,
# PlanarConfig, TileWidth, TileLength, TileOffsets, TileByteCounts, SampleFormat.
_DECODE_TAGS = frozenset({256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 284, 322, 323, 324, 325, 339})


def _tiff_size(data: bytes) -> ImageInfo:
    directory = _first_ifd(data, "tiff")
    if directory.duplicated & _DECODE_TAGS:
        tags = ", ".join(str(t) for t in sorted(directory.duplicated & _DECODE_TAGS))
        # The decoder keeps the first value, another reader may keep the
        # last: an image whose size depends on who reads it is refused.
        _corrupt("tiff", f"tags repeated in the first directory make its size ambiguous ({tags})")
    width, height = directory.single(_TAG_WIDTH), directory.single(_TAG_HEIGHT)
    if width is None or height is None:
        _corrupt("tiff", "first directory lacks ImageWidth or ImageLength")
    orientation = _valid_orientation(directory.single(_TAG_ORIENTATION, 1))
    channels, sample_bytes, buffer = _tiff_layout(directory, width, height)
    return ImageInfo("tiff", width, height, orientation, channels, sample_bytes, 1, buffer)


def _tiff_layout(directory: _Directory, width: int, height: int) -> tuple[int, int, int]:
    """``(channels, sample_bytes, buffer_bytes)`` of decoding a TIFF directory with OpenCV."""
    samples = directory.single(_TAG_SAMPLES, 1) or 1
    bits = max(directory.fields.get(_TAG_BITS, (1,)))
    sample_bytes = next(size for size in (1, 2, 4, 8, bits) if bits <= 8 * size)
    photometric = directory.single(_TAG_PHOTOMETRIC, -1)
    grey_or_rgb = (samples == 1 and photometric in (0, 1)) or (samples == 3 and photometric == 2)
    # Other layouts (palette, YCbCr, CMYK, extra samples, ...) come out as BGRA.
    channels = samples if grey_or_rgb else max(samples, 4)
    if _TAG_TILE_WIDTH in directory.fields:
        tile = (directory.single(_TAG_TILE_WIDTH, 0) or 0) * (directory.single(_TAG_TILE_LENGTH, 0) or 0)
    else:
        rows = directory.single(_TAG_ROWS_PER_STRIP, height) or height
        tile = width * min(rows, height)
    # One tile (or strip) at a time goes through a buffer, counted at four
    # samples a pixel or more: unusual layouts are read as RGBA, and grey
    # ones were measured to cost that much.
    return channels, sample_bytes, tile * max(channels, 4) * sample_bytes


def _first_ifd(data: bytes, fmt: str) -> _Directory:
    """Integer fields of the first image directory of a TIFF structure.

    Handles both byte orders, classic TIFF (32-bit offsets, 12-byte entries)
    and BigTIFF (64-bit offsets, 20-byte entries). Values that fit the
    entry's value field are stored left-justified in it, in either byte
    order; longer arrays are read from their offset when it lies in ``data``.
    """
    order = "<" if data[:2] == b"II" else ">"
    (version,) = _read(data, 2, order + "H", fmt)
    if version == 42:
        count_layout, entry_size, offset_layout, types = "H", 12, "I", _INTEGER_TYPES
        (ifd,) = _read(data, 4, order + "I", fmt)
    elif version == 43:
        count_layout, entry_size, offset_layout, types = "Q", 20, "Q", _BIGTIFF_INTEGER_TYPES
        _offset_size, _zero, ifd = _read(data, 4, order + "HHQ", fmt)
    else:
        _corrupt(fmt, f"unknown TIFF version {version}")
    (count,) = _read(data, ifd, order + count_layout, fmt)
    if count > _MAX_ENTRIES:
        _corrupt(fmt, f"{count} entries in the first directory (at most {_MAX_ENTRIES})")
    first_entry = ifd + struct.calcsize(count_layout)
    if first_entry + count * entry_size > len(data):
        _cut_short(fmt)
    value_at = 4 + struct.calcsize(offset_layout)
    slot = struct.calcsize(offset_layout)
    fields: dict[int, tuple[int, ...]] = {}
    seen: set[int] = set()
    duplicated: set[int] = set()
    for entry in range(first_entry, first_entry + count * entry_size, entry_size):
        tag, kind, n_values = struct.unpack_from(order + "HH" + offset_layout, data, entry)
        if tag in seen:
            duplicated.add(tag)
            continue
        seen.add(tag)
        if kind not in types or not 1 <= n_values <= _MAX_VALUES:
            continue
        layout = order + types[kind] * n_values
        at = entry + value_at
        if struct.calcsize(layout) > slot:
            (at,) = struct.unpack_from(order + offset_layout, data, at)
            if at + struct.calcsize(layout) > len(data):
                continue
        fields[tag] = struct.unpack_from(layout, data, at)
    return _Directory(fields, frozenset(duplicated))


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (1..8) of a TIFF-structured EXIF block.

    Metadata is advisory: a missing, damaged or out-of-range tag yields 1
    rather than rejecting an otherwise good image.
    """
    if tiff[:4] not in _TIFF_MAGICS[:2]:
        return 1
    try:
        directory = _first_ifd(tiff, "tiff")
    except CorruptImage:
        return 1
    return _valid_orientation(directory.single(_TAG_ORIENTATION, 1))


def _valid_orientation(value: int) -> int:
    return value if 1 <= value <= 8 else 1


_READERS = {
    "png": _png_size,
    "jpeg": _jpeg_size,
    "gif": _gif_size,
    "bmp": _bmp_size,
    "webp": _webp_size,
    "tiff": _tiff_size,
}
