"""Hostile and unusual image files, built byte by byte from real photographs.

Every builder returns ``bytes``; nothing here touches the network or disk.
The photographs are scikit-image samples, cut and recoloured where a test
needs many distinct images.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from functools import cache

import cv2
import numpy as np

from tests.conftest import sample_bgr

MB = 1024 * 1024


@cache
def _photo(name: str) -> np.ndarray:
    return sample_bgr(name)


def photo(name: str = "chelsea", width: int = 160, height: int = 120) -> np.ndarray:
    """A sample photograph resized to ``width`` x ``height``, BGR uint8."""
    return cv2.resize(_photo(name), (width, height), interpolation=cv2.INTER_AREA)


def encode(img: np.ndarray, ext: str, *flags: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(flags))
    if not ok:
        raise ValueError(f"OpenCV could not encode {ext}")
    return buf.tobytes()


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    return encode(img, ".jpg", cv2.IMWRITE_JPEG_QUALITY, quality)


def png(img: np.ndarray) -> bytes:
    return encode(img, ".png")


def webp(img: np.ndarray, quality: int = 80) -> bytes:
    return encode(img, ".webp", cv2.IMWRITE_WEBP_QUALITY, quality)


def cut(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of ``data``."""
    return data[: int(len(data) * fraction)]


def flip_bytes(data: bytes, start: int, count: int) -> bytes:
    """``data`` with ``count`` bytes from ``start`` inverted."""
    out = bytearray(data)
    for i in range(start, min(start + count, len(out))):
        out[i] ^= 0xFF
    return bytes(out)


# --- PNG -------------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bad_crc(data: bytes, kind: bytes = b"IDAT") -> bytes:
    """``data`` with the CRC of its first ``kind`` chunk damaged (the chunk itself intact)."""
    start = data.index(kind)
    (length,) = struct.unpack_from(">I", data, start - 4)
    return flip_bytes(data, start + 4 + length, 1)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring ``width`` x ``height``, then IEND: no pixels at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_with_exif(img: np.ndarray, orientation: int) -> bytes:
    """A PNG of ``img`` with an eXIf chunk carrying ``orientation``, placed before IDAT."""
    data = png(img)
    at = data.index(b"IDAT") - 4
    return data[:at] + png_chunk(b"eXIf", exif_block(orientation)) + data[at:]


# --- JPEG ------------------------------------------------------------------------------


def exif_block(orientation: int) -> bytes:
    """A little-endian TIFF structure whose only directory entry is Orientation."""
    entry = struct.pack("<HHIH", 0x0112, 3, 1, orientation) + b"\0\0"
    return b"II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def jpeg_with_exif(data: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment carrying ``orientation`` right after SOI."""
    payload = b"Exif\0\0" + exif_block(orientation)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that applying EXIF ``orientation`` shows ``upright``."""
    undo = {
        1: lambda a: a,
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.transpose(a),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
        7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    }
    return np.ascontiguousarray(undo[orientation](upright))


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI, a baseline frame header declaring ``width`` x ``height``, EOI."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def jpeg_scan_damaged(data: bytes) -> bytes:
    """``data`` with its frame header's component count set to an impossible value."""
    sof = data.index(b"\xff\xc0")
    out = bytearray(data)
    out[sof + 9] = 0  # zero components
    return bytes(out)


def cmyk_jpeg(img: np.ndarray) -> bytes:
    """A four-component (CMYK) JPEG of ``img``, as print workflows write them."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img[..., ::-1]).convert("CMYK").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def with_zip_appended(data: bytes) -> bytes:
    """``data`` followed by a ZIP archive (the archive is still readable from the end)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("readme.txt", "hidden payload " * 20)
    return data + buf.getvalue()


def zip_archive() -> bytes:
    return with_zip_appended(b"")


# --- GIF and WebP --------------------------------------------------------------------------


def animated_gif(first: np.ndarray, second: np.ndarray) -> bytes:
    animation = cv2.Animation()
    animation.frames = [first, second]
    animation.durations = [100, 100]
    ok, buf = cv2.imencodeanimation(".gif", animation)
    if not ok:
        raise ValueError("OpenCV could not encode an animated GIF")
    return buf.tobytes()


def gif_html_polyglot(img: np.ndarray) -> bytes:
    """A valid GIF that is also an HTML document: markup in a comment block and after the trailer."""
    gif = encode(img, ".gif")
    markup = b"<html><body><script>alert(document.domain)</script></body></html>"
    # Global colour table follows the 13-byte header when its flag is set.
    flags = gif[10]
    table = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    at = 13 + table
    comment = b"\x21\xfe" + bytes([len(markup)]) + markup + b"\x00"
    return gif[:at] + comment + gif[at:] + markup


def gif_header_only(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"\x3b"


def webp_header_only(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP declaring a ``width`` x ``height`` canvas and nothing else."""
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + size
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def bmp_header_only(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


# --- hostile headers: TIFF structures, EXIF field types -----------------------------------


def tiff_directory(entries: list[tuple[int, int, int, int | bytes]], body: bytes = b"") -> bytes:
    """A little-endian classic TIFF whose one directory holds ``entries`` in the order given.

    An entry is ``(tag, type, count, value)``; an int value is packed as a
    SHORT (type 3) or LONG (otherwise) into the 4-byte value field, bytes
    are used as they are. StripOffsets (273) is pointed at ``body``, which
    follows the directory. Entries are neither sorted nor deduplicated.
    """
    ifd_size = 2 + 12 * len(entries) + 4
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = 8 + ifd_size
        if isinstance(value, int):
            value = struct.pack("<H" if kind == 3 else "<I", value)
        out += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")[:4]
    return out + struct.pack("<I", 0) + body


def tiff_grey_deflate(width: int, height: int, *, claimed: tuple[int, int] | None = None) -> bytes:
    """A one-strip deflate-compressed grey TIFF of ``width`` x ``height`` black pixels.

    With ``claimed``, ImageWidth and ImageLength each appear a second time
    right after the real ones, carrying the claimed size: a reader that keeps
    the last entry sees ``claimed``, libtiff (which keeps the first) decodes
    ``width`` x ``height``.
    """
    strip = zlib.compress(bytes(width * height), 9)
    dims = [(256, 4, 1, width), (257, 4, 1, height)]
    if claimed is not None:
        dims = [(256, 4, 1, width), (256, 4, 1, claimed[0]), (257, 4, 1, height), (257, 4, 1, claimed[1])]
    entries = [
        *dims,
        (258, 3, 1, 8),
        (259, 3, 1, 8),  # deflate
        (262, 3, 1, 1),  # black is zero
        (273, 4, 1, 0),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
    ]
    return tiff_directory(entries, strip)


def tiff_pages(*sizes: tuple[int, int]) -> bytes:
    """A deflate-compressed grey TIFF with one black page (directory) per ``(width, height)``, in order."""
    from PIL import Image

    pages = [Image.new("L", size) for size in sizes]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    return buf.getvalue()


def exif_long8(orientation: int = 6) -> bytes:
    """An EXIF block whose last entry is Orientation typed LONG8 (16), a BigTIFF-only type.

    In a classic TIFF structure the entry's value field has 4 bytes, so
    reading it as 8 runs past the end of the block.
    """
    make = struct.pack("<HHI", 0x010F, 16, 1) + b"Cam\0"
    orient = struct.pack("<HHI", 0x0112, 16, 1) + struct.pack("<I", orientation)
    return b"II*\0" + struct.pack("<IH", 8, 2) + make + orient


def jpeg_with_exif_block(data: bytes, block: bytes) -> bytes:
    """Insert an EXIF APP1 segment holding the TIFF structure ``block`` right after SOI."""
    payload = b"Exif\0\0" + block
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def png_with_exif_block(data: bytes, block: bytes) -> bytes:
    """Insert an eXIf chunk holding ``block`` before the first IDAT."""
    at = data.index(b"IDAT") - 4
    return data[:at] + png_chunk(b"eXIf", block) + data[at:]


def webp_with_exif_block(data: bytes, width: int, height: int, block: bytes) -> bytes:
    """Rewrap a simple (VP8/VP8L) WebP as an extended one with an EXIF chunk holding ``block``."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif = b"EXIF" + struct.pack("<I", len(block)) + block + b"\0" * (len(block) & 1)
    body = b"WEBP" + vp8x + data[12:] + exif
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- small files that decode to a lot of memory or work ---------------------------------


def png_flat(width: int, height: int, *, bit_depth: int = 16, colour_type: int = 6) -> bytes:
    """A PNG of ``width`` x ``height`` zero samples (16-bit RGBA by default), compressed as it is written."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + width * channels * bit_depth // 8)  # filter byte 0, then the samples
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def bmp_rle8_flat(width: int, height: int) -> bytes:
    """An 8-bit RLE BMP of ``width`` x ``height`` that ends its bitmap at once: a few hundred bytes."""
    palette = b"\0\0\0\0" * 256
    pixels = b"\x00\x01"  # escape: end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def gif_tiny_frame(width: int, height: int) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height`` and whose only frame is one pixel."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def webp_flat(width: int, height: int, *, alpha: bool = True) -> bytes:
    """A lossless WebP of ``width`` x ``height`` zero pixels (with an alpha channel by default)."""
    img = np.zeros((height, width, 4 if alpha else 3), np.uint8)
    if alpha:
        img[..., 3] = 128  # a real alpha the encoder cannot drop
    return encode(img, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101)


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of every segment of a JPEG after SOI; a scan includes its entropy-coded data."""
    pos, out = 2, []
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not RSTn
            while data[data.index(b"\xff", end) + 1] in (0, *range(0xD0, 0xD8)):
                end = data.index(b"\xff", end) + 2
            end = data.index(b"\xff", end)
        out.append((marker, pos, end))
        pos = end
    return out


def jpeg_repeated_scans(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG of a flat grey image whose smallest scan is repeated until it has ``scans`` scans.

    Each repeat is a few bytes (an end-of-band run over the whole
    component), yet the decoder walks every block of the component again.
    """
    img = np.full((height, width, 3), 128, np.uint8)
    data = encode(img, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 90)
    segments = jpeg_segments(data)
    sos = [(start, end) for marker, start, end in segments if marker == 0xDA]
    start, end = min(sos, key=lambda span: span[1] - span[0])
    return data[: segments[-1][1]] + data[start:end] * (scans - len(sos)) + b"\xff\xd9"


# --- not images ----------------------------------------------------------------------------


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
HTML = b"<!doctype html><html><body><img src='x.png'></body></html>"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


# --- many distinct images ----------------------------------------------------------------

PHOTOS = (
    "astronaut", "camera", "cat", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
    "brick", "logo", "horse",
)


def variants(count: int, seed: int = 0, low: int = 96, high: int = 160, min_keypoints: int = 16) -> list[bytes]:
    """``count`` distinct JPEGs, ``low``..``high`` px a side, cut from the sample photographs.

    Each is a random window of a photograph, resized and colour-shifted.
    Windows with little texture or fewer than ``min_keypoints`` ORB keypoints
    are skipped: with almost no keypoints the ORB signal is noise (one
    keypoint cannot pass the ratio test against itself), and these images
    must each be their own best match.
    """
    from pictrace.core.features import extract_features

    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    seen: set[bytes] = set()
    for attempt in range(100 * count):
        if len(out) == count:
            break
        src = _photo(PHOTOS[attempt % len(PHOTOS)])
        w, h = (int(v) for v in rng.integers(low, high + 1, 2))
        scale = rng.uniform(1.0, 2.5)
        cw, ch = min(src.shape[1], int(w * scale)), min(src.shape[0], int(h * scale))
        x, y = int(rng.integers(0, src.shape[1] - cw + 1)), int(rng.integers(0, src.shape[0] - ch + 1))
        window = cv2.resize(src[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
        if window.std() < 25:
            continue
        shift = rng.integers(-40, 41, 3)
        img = np.clip(window.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        data = jpeg(img, 85)
        if data not in seen and len(extract_features(data).keypoints) >= min_keypoints:
            seen.add(data)
            out.append(data)
    if len(out) < count:
        raise ValueError(f"only {len(out)} of {count} images passed the texture checks")
    return out


# --- pages, URLs and multipart names for request-level cases ---------------------------------


def distinct_pngs(count: int, width: int = 64, height: int = 48) -> list[bytes]:
    """``count`` small PNGs with different bytes: each a different photograph, or a shifted copy."""
    out = []
    for i in range(count):
        img = photo(PHOTOS[i % len(PHOTOS)], width, height)
        out.append(png(np.roll(img, i // len(PHOTOS), axis=1)))
    return out


def gallery_page(srcs: list[str], extra: str = "") -> bytes:
    """An HTML page showing ``srcs`` as ``<img>`` elements, after ``extra`` markup."""
    imgs = "".join(f'<img src="{src}" width="64" height="48">' for src in srcs)
    return f"<!doctype html><html><body>{extra}{imgs}</body></html>".encode()


def rfc2231_disposition(filename: str, charset: str = "UTF-8", fallback: str | None = None) -> str:
    """A multipart ``file`` part's Content-Disposition naming ``filename`` with RFC 2231 ``filename*``."""
    from urllib.parse import quote

    encoded = quote(filename.encode(charset), safe="")
    plain = f'; filename="{fallback}"' if fallback is not None else ""
    return f"form-data; name=\"file\"{plain}; filename*={charset}''{encoded}"


# Cloud metadata endpoints, spelt as a URL may spell them; refused even with private URLs allowed.
METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fd00:ec2::23]/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:a9fe:aa02]/v2/credentials",
    "http://[::169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
]
