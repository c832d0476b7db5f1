"""Header probing: format identification and dimensions without decoding."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from pictrace.core.probe import ImageInfo, probe
from pictrace.errors import CorruptImage, InvalidImage, UnsupportedFormat

SUPPORTED_LIST = "supported: JPEG, PNG, WebP, BMP, TIFF, GIF"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)


# --- every supported format, produced by a real encoder ---------------------------

ENCODED_CASES = [
    # (ext, params, alpha, expected format, bytes 12..16 that select the header path)
    (".jpg", {}, False, "jpeg", None),
    (".png", {}, False, "png", b"IHDR"),
    (".png", {}, True, "png", b"IHDR"),
    (".webp", {"webp_quality": 101}, False, "webp", b"VP8L"),
    (".webp", {"webp_quality": 80}, False, "webp", b"VP8 "),
    (".webp", {"webp_quality": 80}, True, "webp", b"VP8X"),
    (".bmp", {}, False, "bmp", None),
    (".bmp", {}, True, "bmp", None),
    (".tiff", {}, False, "tiff", None),
    (".gif", {}, False, "gif", None),
]


@pytest.mark.parametrize(("ext", "params", "alpha", "fmt", "chunk"), ENCODED_CASES)
def test_probe_reads_size_of_encoded_photo(photo_bgr, encode, ext, params, alpha, fmt, chunk):
    img = photo_bgr
    if alpha:  # a real, varying alpha so encoders cannot drop it
        ramp = np.linspace(0, 255, img.shape[1]).astype(np.uint8)
        img = np.dstack([img, np.broadcast_to(ramp, img.shape[:2])])
    data = encode(img, ext, **params)
    if chunk is not None:
        assert data[12:16] == chunk  # the encoder produced the variant under test
    assert probe(data) == ImageInfo(fmt, 451, 300, 1)


@pytest.mark.parametrize("shape", [(1, 1), (20, 20000), (20000, 20), (3, 7)])
@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tiff", ".gif"])
def test_probe_extreme_aspect_ratios(encode, ext, shape):
    img = np.zeros((*shape, 3), np.uint8)
    info = probe(encode(img, ext))
    assert (info.width, info.height) == (shape[1], shape[0])


@pytest.mark.parametrize("shape", [(1, 1), (20, 16383), (16383, 20)])
def test_probe_webp_extremes(encode, shape):
    info = probe(encode(np.zeros((*shape, 3), np.uint8), ".webp", webp_quality=80))
    assert (info.width, info.height) == (shape[1], shape[0])


def test_pixels_and_oriented_size():
    assert ImageInfo("jpeg", 40, 30, 1).pixels == 1200
    assert ImageInfo("jpeg", 40, 30, 1).oriented_size == (40, 30)
    assert ImageInfo("jpeg", 40, 30, 3).oriented_size == (40, 30)
    for orientation in (5, 6, 7, 8):
        assert ImageInfo("jpeg", 40, 30, orientation).oriented_size == (30, 40)


# --- TIFF variants ---------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("long_dims", [False, True])
@pytest.mark.parametrize("bigtiff", [False, True])
def test_probe_tiff_byte_orders_and_field_types(photo_bgr, make_tiff, big_endian, long_dims, bigtiff):
    data = make_tiff(photo_bgr[..., ::-1], big_endian=big_endian, long_dims=long_dims, bigtiff=bigtiff)
    assert data[:2] == (b"MM" if big_endian else b"II")
    assert probe(data) == ImageInfo("tiff", 451, 300, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_probe_tiff_orientation_tag(make_tiff, orientation):
    data = make_tiff(np.zeros((5, 9), np.uint8), big_endian=orientation % 2 == 0, orientation=orientation)
    assert probe(data) == ImageInfo("tiff", 9, 5, orientation)


def test_tiff_without_dimensions_is_corrupt():
    # One directory entry (Compression) and no ImageWidth/ImageLength.
    data = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 259, 3, 1, 1, 0) + b"\0" * 4
    with pytest.raises(CorruptImage, match="ImageWidth"):
        probe(data)


# --- BMP variants ----------------------------------------------------------------


def test_probe_bmp_top_down_has_positive_height(photo_bgr, encode):
    data = bytearray(encode(photo_bgr, ".bmp"))
    (height,) = struct.unpack_from("<i", data, 22)
    struct.pack_into("<i", data, 22, -height)
    assert probe(bytes(data)) == ImageInfo("bmp", 451, 300, 1)


def test_probe_bmp_os2_core_header():
    header = struct.pack("<IHHHH", 12, 7, 5, 1, 24)
    rows = b"\0" * (24 * 5)
    data = b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) + header + rows
    assert probe(data) == ImageInfo("bmp", 7, 5, 1)


def test_bmp_with_unknown_header_size_is_corrupt():
    with pytest.raises(CorruptImage, match="DIB header size"):
        probe(b"BM" + b"\0" * 12 + struct.pack("<I", 77) + b"\0" * 40)


# --- orientation metadata in JPEG, PNG and WebP ------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_probe_jpeg_exif_orientation(photo_bgr, encode, with_exif, orientation, big_endian):
    data = with_exif(encode(photo_bgr, ".jpg"), orientation, big_endian=big_endian)
    assert probe(data) == ImageInfo("jpeg", 451, 300, orientation)


def test_probe_ignores_out_of_range_or_damaged_exif(photo_bgr, encode, with_exif):
    jpeg = encode(photo_bgr, ".jpg")
    assert probe(with_exif(jpeg, 9)).orientation == 1
    damaged = bytearray(with_exif(jpeg, 6))
    damaged[2 + 4 + 6 + 4 : 2 + 4 + 6 + 8] = b"\xff\xff\xff\x7f"  # IFD offset far past the end
    assert probe(bytes(damaged)) == ImageInfo("jpeg", 451, 300, 1)


def test_probe_png_exif_chunk(photo_bgr, encode, exif_block):
    png = encode(photo_bgr, ".png")
    data = png[:33] + png_chunk(b"eXIf", exif_block(8)) + png[33:]
    assert probe(data) == ImageInfo("png", 451, 300, 8)


def test_probe_webp_exif_chunk(photo_bgr, encode, exif_block):
    data = webp_with_exif(encode(photo_bgr, ".webp", webp_quality=101), 451, 300, exif_block(6))
    assert data[12:16] == b"VP8X"
    assert probe(data) == ImageInfo("webp", 451, 300, 6)


def webp_with_exif(webp: bytes, width: int, height: int, exif: bytes) -> bytes:
    """Rewrap a simple WebP as an extended one (VP8X) with an EXIF chunk after the image."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif_chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\0" * (len(exif) & 1)
    body = b"WEBP" + vp8x + webp[12:] + exif_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- not images, and images we do not take -----------------------------------------

FOREIGN = [
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "SVG"),
    (b"\xef\xbb\xbf  <svg width='4' height='4'></svg>", "SVG"),
    (b"<!DOCTYPE html>\n<html><body><img src=x></body></html>", "HTML"),
    (b"\n\n<HTML><HEAD><TITLE>x</TITLE></HEAD></HTML>", "HTML"),
    (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>', "XML"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    (b"\xff\x0a\xfa\x7f\x01\x90\x08", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", "JPEG XL"),
    (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf", "HEIC/HEIF"),
    (b"\x00\x00\x00\x20ftypmif1\x00\x00\x00\x00mif1avifmiafMA1B", "AVIF"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "ISO media ('mp42')"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00", "RIFF 'WAVE' data"),
    (b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00", "Photoshop PSD"),
]


@pytest.mark.parametrize(("data", "name"), FOREIGN)
def test_foreign_files_are_named(data, name):
    with pytest.raises(UnsupportedFormat) as err:
        probe(data)
    assert err.value.message == f"{name} is not supported; {SUPPORTED_LIST}"
    assert err.value.details["detected"] == name


def test_real_avif_is_named(photo_bgr, encode):
    with pytest.raises(UnsupportedFormat, match="^AVIF is not supported"):
        probe(encode(photo_bgr, ".avif"))


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"\x00" * 64, b"{\"json\": true}", b"B", b"\xff", b"<p>just a fragment</p>"],
)
def test_non_images_are_invalid(data):
    with pytest.raises(InvalidImage, match="^not an image") as err:
        probe(data)
    assert type(err.value) is InvalidImage


def test_random_bytes_are_not_an_image():
    rng = np.random.default_rng(7)
    for _ in range(300):
        data = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
        if data[:2] in (b"BM", b"\xff\x0a", b"\x1f\x8b") or data[:3] == b"\xff\xd8\xff":
            continue  # short magics a random prefix may hit; covered by the fuzz test below
        with pytest.raises(InvalidImage) as err:
            probe(data)
        assert type(err.value) is InvalidImage


# --- cut short, malformed and empty headers ---------------------------------------


@pytest.mark.parametrize("ext", [".jpg", ".png", ".gif", ".bmp", ".tiff", ".webp"])
def test_every_cut_short_header_is_corrupt(photo_bgr, encode, ext):
    # Small, because OpenCV's TIFF writer puts the directory after the pixels.
    data = encode(photo_bgr[100:124, 200:240], ext)
    full = probe(data)
    # Shortest prefix that still probes; everything shorter must be reported,
    # and never crash with a low-level error.
    shortest = next(n for n in range(1, len(data)) if _probes(data[:n]))
    assert probe(data[:shortest]) == full
    for n in range(2, shortest):
        with pytest.raises(InvalidImage) as err:
            probe(data[:n])
        assert isinstance(err.value, CorruptImage), (n, err.value)


def _probes(data: bytes) -> bool:
    try:
        probe(data)
    except InvalidImage:
        return False
    return True


def test_truncated_jpeg_before_frame_header_says_cut_short(photo_bgr, encode):
    data = encode(photo_bgr, ".jpg")
    sof = data.index(b"\xff\xc0")
    with pytest.raises(CorruptImage, match="JPEG header is cut short"):
        probe(data[: sof + 5])


def test_jpeg_without_frame_header_is_corrupt():
    with pytest.raises(CorruptImage, match="no frame header"):
        probe(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02")


def test_jpeg_with_garbage_between_segments_is_corrupt():
    with pytest.raises(CorruptImage, match="expected a marker"):
        probe(b"\xff\xd8\xff\xe0\x00\x04abXYZ")


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (0, 0)])
def test_zero_dimensions_are_corrupt(width, height):
    with pytest.raises(CorruptImage, match="empty image"):
        probe(png_header_only(width, height))


def test_gif_with_zero_logical_screen_is_corrupt(photo_bgr, encode):
    data = bytearray(encode(photo_bgr, ".gif"))
    data[6:10] = b"\0\0\0\0"
    with pytest.raises(CorruptImage, match="empty image"):
        probe(bytes(data))


def test_png_whose_first_chunk_is_not_ihdr_is_corrupt():
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a" * 13)
    with pytest.raises(CorruptImage, match="IHDR"):
        probe(data)


def test_webp_with_bad_vp8_start_code_is_corrupt(photo_bgr, encode):
    data = bytearray(encode(photo_bgr, ".webp", webp_quality=80))
    assert data[12:16] == b"VP8 "
    data[23] ^= 0xFF
    with pytest.raises(CorruptImage, match="start code"):
        probe(bytes(data))


def test_probe_reads_huge_claims_without_decoding():
    info = probe(png_header_only(50_000, 50_000) + b"\0" * 16)
    assert info == ImageInfo("png", 50_000, 50_000, 1)
    assert info.pixels == 2_500_000_000


# --- robustness: arbitrary bytes after a valid signature ----------------------------

MAGICS = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\0",
    b"MM\0*",
    b"II+\0",
    b"RIFF\0\0\0\0WEBP",
]


@pytest.mark.parametrize("magic", MAGICS)
def test_fuzzed_headers_never_crash(magic):
    rng = np.random.default_rng(int.from_bytes(magic[:4].ljust(4, b"\0"), "little"))
    for _ in range(400):
        tail = rng.integers(0, 256, int(rng.integers(0, 80)), dtype=np.uint8).tobytes()
        try:
            info = probe(magic + tail)
        except InvalidImage:
            continue
        assert info.width > 0 and info.height > 0
        assert 1 <= info.orientation <= 8


# --- hostile headers: odd field types, ambiguous sizes -------------------------------

from tests.hostile import corpus as hostile  # noqa: E402


def _long8_carriers() -> list[tuple[str, bytes]]:
    img = hostile.photo("chelsea", 160, 120)
    block = hostile.exif_long8(6)
    return [
        ("jpeg", hostile.jpeg_with_exif_block(hostile.jpeg(img), block)),
        ("png", hostile.png_with_exif_block(hostile.png(img), block)),
        ("webp", hostile.webp_with_exif_block(hostile.webp(img), 160, 120, block)),
    ]


@pytest.mark.parametrize(("fmt", "data"), _long8_carriers(), ids=lambda v: v if isinstance(v, str) else "")
def test_exif_entries_typed_long8_are_skipped(fmt, data):
    # LONG8 belongs to BigTIFF; in an EXIF block it is an unknown type, so
    # the orientation it claims is not read and the image is still probed.
    assert probe(data) == ImageInfo(fmt, 160, 120, 1)


def test_classic_tiff_with_long8_dimensions_is_corrupt_not_a_crash():
    strip = bytes(64 * 48)
    data = hostile.tiff_directory(
        [(256, 16, 1, 64), (257, 16, 1, 48), (258, 3, 1, 8), (273, 4, 1, 0), (279, 4, 1, len(strip))], strip
    )
    with pytest.raises(CorruptImage, match="ImageWidth"):
        probe(data[: 8 + 2 + 12 * 5])  # cut right after the entries: a LONG8 read would overrun


def test_bigtiff_long8_dimensions_are_read(make_tiff):
    data = bytearray(make_tiff(np.zeros((5, 9), np.uint8), bigtiff=True, long_dims=True))
    # Retype ImageWidth and ImageLength from LONG to LONG8 (their value fields have 8 bytes).
    for entry in (16 + 8, 16 + 8 + 20):
        struct.pack_into("<H", data, entry + 2, 16)
    assert probe(bytes(data)) == ImageInfo("tiff", 9, 5, 1)


def test_tiff_with_repeated_size_tags_is_refused():
    # libtiff keeps the first ImageWidth/ImageLength (4000x4000), a last-wins reader sees 64x48.
    data = hostile.tiff_grey_deflate(4000, 4000, claimed=(64, 48))
    with pytest.raises(CorruptImage, match="ambiguous"):
        probe(data)


def test_tiff_with_a_repeated_harmless_tag_is_read():
    strip = bytes(9 * 5)
    data = hostile.tiff_directory(
        [(256, 3, 1, 9), (257, 3, 1, 5), (258, 3, 1, 8), (273, 4, 1, 0), (279, 4, 1, len(strip)),
         (305, 2, 4, b"ab\0\0"), (305, 2, 4, b"cd\0\0")],
        strip,
    )
    assert probe(data) == ImageInfo("tiff", 9, 5, 1)


def test_exif_with_repeated_orientation_keeps_the_first():
    first = struct.pack("<HHIH", 0x0112, 3, 1, 6) + b"\0\0"
    second = struct.pack("<HHIH", 0x0112, 3, 1, 3) + b"\0\0"
    block = b"II*\0" + struct.pack("<IH", 8, 2) + first + second + struct.pack("<I", 0)
    data = hostile.jpeg_with_exif_block(hostile.jpeg(hostile.photo()), block)
    assert probe(data).orientation == 6


@pytest.mark.parametrize("kind", [0, 2, 5, 7, 13, 16, 17, 18, 255, 65535])
@pytest.mark.parametrize("tag", [0x0112, 256])
def test_any_field_type_at_the_end_of_a_block_never_crashes(kind, tag):
    block = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHI", tag, kind, 1) + b"\x06\0\0\0"
    assert probe(hostile.jpeg_with_exif_block(hostile.jpeg(hostile.photo()), block)).orientation in range(1, 9)
    tiff = hostile.tiff_directory([(tag, kind, 1, 6)])
    with pytest.raises(CorruptImage):
        probe(tiff)


def test_tiff_directory_with_too_many_entries_is_corrupt():
    entries = [(256, 3, 1, 9), (257, 3, 1, 5)] + [(40000 + i, 3, 1, 0) for i in range(5000)]
    with pytest.raises(CorruptImage, match="entries"):
        probe(hostile.tiff_directory(entries))


# --- JPEG scans ----------------------------------------------------------------------


def test_jpeg_scans_are_counted(photo_bgr, encode):
    assert probe(encode(photo_bgr, ".jpg")).scans == 1
    assert probe(encode(photo_bgr, ".jpg", jpeg_progressive=1)).scans == 10
    assert probe(hostile.jpeg_repeated_scans(64, 48, 300)).scans == 300


def test_scan_markers_after_the_image_or_inside_metadata_do_not_count(photo_bgr, encode):
    data = encode(photo_bgr, ".jpg")
    trailer = b"\xff\xda\x00\x08" * 1000  # as in a video appended to a motion photo
    assert probe(data + trailer).scans == 1
    sof = data.index(b"\xff\xc0")
    comment = b"\xff\xfe" + struct.pack(">H", 2 + len(trailer)) + trailer
    assert probe(data[:sof] + comment + data[sof:]).scans == 1
    after_frame = sof + 2 + struct.unpack_from(">H", data, sof + 2)[0]
    assert probe(data[:after_frame] + comment + data[after_frame:]).scans == 1


def test_an_end_of_image_hidden_in_metadata_does_not_hide_later_scans():
    data = hostile.jpeg_repeated_scans(64, 48, 100)
    sos = data.index(b"\xff\xda")
    comment = b"\xff\xfe\x00\x04\xff\xd9"
    assert probe(data[:sos] + comment + data[sos:]).scans == 100
