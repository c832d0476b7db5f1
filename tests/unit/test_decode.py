"""Decoding untrusted bytes to upright BGR uint8, on real photographs."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest

import pictrace.core.decode as decode_module
from pictrace.core.decode import decode, to_bgr8
from pictrace.core.probe import ImageInfo, probe
from pictrace.errors import CorruptImage, ImageTooComplex, ImageTooLarge, InvalidImage, UnsupportedFormat

# How each EXIF orientation maps the stored grid to what a viewer shows,
# written independently of the code under test.
DISPLAY_FROM_STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
STORED_FROM_DISPLAY = {**DISPLAY_FROM_STORED, 6: DISPLAY_FROM_STORED[8], 8: DISPLAY_FROM_STORED[6]}


def stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixel grid a camera would store so that ``orientation`` shows ``upright``."""
    return np.ascontiguousarray(STORED_FROM_DISPLAY[orientation](upright))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def smoothed_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean difference after a 5x5 box blur, which averages away palette dithering."""
    return mean_abs_diff(cv2.blur(a, (5, 5)), cv2.blur(b, (5, 5)))


def assert_bgr8(img: np.ndarray, height: int, width: int) -> None:
    assert img.dtype == np.uint8
    assert img.shape == (height, width, 3)
    assert img.flags.c_contiguous


def with_alpha_ramp(bgr: np.ndarray) -> np.ndarray:
    """BGRA with alpha running 0..255 left to right (fully clear and fully opaque ends)."""
    ramp = np.linspace(0, 255, bgr.shape[1]).round().astype(np.uint8)
    return np.dstack([bgr, np.broadcast_to(ramp, bgr.shape[:2])])


def over_white(bgra: np.ndarray) -> np.ndarray:
    """Reference compositing in floating point."""
    a = bgra[..., 3:4].astype(np.float64) / 255
    return np.round(bgra[..., :3] * a + 255 * (1 - a)).astype(np.uint8)


# --- round trips per format --------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".png", {}), (".bmp", {}), (".tiff", {}), (".webp", {"webp_quality": 101})],
)
def test_lossless_round_trip_is_exact(photo_bgr, encode, ext, params):
    img = decode(encode(photo_bgr, ext, **params))
    assert_bgr8(img, 300, 451)
    assert np.array_equal(img, photo_bgr)


@pytest.mark.parametrize(
    ("ext", "params", "tolerance"),
    [
        (".jpg", {"jpeg_quality": 95}, 1.0),
        (".webp", {"webp_quality": 90}, 1.5),
        (".gif", {}, 3.0),  # dithered onto a fixed palette
    ],
)
def test_lossy_round_trip_is_close(photo_bgr, astronaut_bgr, encode, ext, params, tolerance):
    img = decode(encode(photo_bgr, ext, **params))
    assert_bgr8(img, 300, 451)
    assert smoothed_diff(img, photo_bgr) < tolerance
    # ...and far from an unrelated photograph (which differs by ~70 on average).
    assert smoothed_diff(img, cv2.resize(astronaut_bgr, (451, 300))) > 40


@pytest.mark.parametrize("shape", [(1, 1), (20, 20000), (20000, 20)])
@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tiff", ".gif"])
def test_tiny_and_extreme_sizes(photo_bgr, encode, ext, shape):
    src = cv2.resize(photo_bgr, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    img = decode(encode(src, ext))
    assert_bgr8(img, *shape)
    assert smoothed_diff(img, src) < 4


def test_gif_gives_first_frame_of_animation(photo_bgr):
    first = photo_bgr[:120, :160].copy()
    second = cv2.flip(photo_bgr[150:270, 250:410], -1)
    animation = cv2.Animation()
    animation.frames = [first, second]
    animation.durations = [100, 100]
    ok, buf = cv2.imencodeanimation(".gif", animation)
    assert ok
    img = decode(buf.tobytes())
    assert_bgr8(img, 120, 160)
    assert smoothed_diff(img, first) < 3
    assert smoothed_diff(img, second) > 30


def test_gif_transparency_becomes_white(photo_bgr, encode):
    bgra = cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2BGRA)
    bgra[:40, :60, 3] = 0
    img = decode(encode(bgra, ".gif"))
    assert (img[:40, :60] == 255).all()
    assert smoothed_diff(img[60:, 80:], photo_bgr[60:, 80:]) < 3


# --- orientation ------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_jpeg_exif_orientation_is_applied(photo_bgr, encode, with_exif, orientation, big_endian):
    data = with_exif(encode(stored_for(photo_bgr, orientation), ".jpg", jpeg_quality=95),
                     orientation, big_endian=big_endian)
    img = decode(data)
    assert_bgr8(img, 300, 451)
    assert mean_abs_diff(img, photo_bgr) < 2.0
    # OpenCV's own EXIF handling (IMREAD_COLOR) agrees pixel for pixel.
    assert np.array_equal(img, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_exif_orientation_is_applied(photo_bgr, encode, exif_block, orientation):
    png = encode(stored_for(photo_bgr, orientation), ".png")
    data = png[:33] + png_chunk(b"eXIf", exif_block(orientation)) + png[33:]
    assert np.array_equal(decode(data), photo_bgr)


@pytest.mark.parametrize("orientation", [3, 6, 7, 8])
def test_webp_exif_orientation_is_applied(photo_bgr, encode, exif_block, orientation):
    stored = stored_for(photo_bgr, orientation)
    webp = encode(stored, ".webp", webp_quality=101)
    data = webp_with_exif(webp, stored.shape[1], stored.shape[0], exif_block(orientation))
    assert np.array_equal(decode(data), photo_bgr)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_is_applied(photo_bgr, make_tiff, orientation):
    rgb = stored_for(photo_bgr, orientation)[..., ::-1]
    data = make_tiff(rgb, big_endian=orientation > 4, orientation=orientation)
    assert np.array_equal(decode(data), photo_bgr)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def webp_with_exif(webp: bytes, width: int, height: int, exif: bytes) -> bytes:
    """Rewrap a simple WebP as an extended one (VP8X) with an EXIF chunk after the image."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    exif_chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + b"\0" * (len(exif) & 1)
    body = b"WEBP" + vp8x + webp[12:] + exif_chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- alpha, depth, grey, CMYK -------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".png", {}), (".webp", {"webp_quality": 101}), (".tiff", {}), (".bmp", {})],
)
def test_alpha_is_flattened_onto_white(photo_bgr, encode, ext, params):
    bgra = with_alpha_ramp(photo_bgr)
    img = decode(encode(bgra, ext, **params))
    assert_bgr8(img, 300, 451)
    assert (img[:, 0] == 255).all()  # fully transparent column
    assert np.array_equal(img[:, -1], photo_bgr[:, -1])  # fully opaque column
    assert np.abs(img.astype(int) - over_white(bgra)).max() <= 1


def test_16_bit_png_is_scaled_not_truncated(encode):
    values = np.array([0, 1, 128, 129, 256, 385, 32767, 32896, 65000, 65407, 65535], np.uint16)
    grid = np.stack([values, values[::-1], values], axis=-1)[None]  # 1 x N x 3
    img = decode(encode(grid, ".png"))
    expected = np.floor(grid / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(img, expected)
    assert img[0, values.tolist().index(65000), 0] == 253  # truncation would give 255


def test_16_bit_photo_png_and_tiff(photo_bgr, encode, make_tiff):
    deep = photo_bgr.astype(np.uint16) * 257 + 100  # not multiples of 257
    for data in (encode(deep, ".png"), make_tiff(deep[..., ::-1].copy(), big_endian=True)):
        assert np.array_equal(decode(data), photo_bgr)


def test_16_bit_png_with_alpha(photo_bgr, encode):
    bgra = with_alpha_ramp(photo_bgr)
    img = decode(encode(bgra.astype(np.uint16) * 257, ".png"))
    assert np.abs(img.astype(int) - over_white(bgra)).max() <= 1


def test_float_tiff_is_scaled_from_unit_range(photo_bgr, encode):
    img = decode(encode(photo_bgr.astype(np.float32) / 255, ".tiff"))
    assert np.abs(img.astype(int) - photo_bgr).max() <= 1


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff", ".bmp"])
def test_grey_becomes_three_equal_channels(photo_bgr, encode, ext):
    grey = cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2GRAY)
    img = decode(encode(grey, ext))
    assert_bgr8(img, 300, 451)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert mean_abs_diff(img[..., 0], grey) < 1.5


def test_grey_with_alpha_is_flattened_then_spread():
    grey = np.array([[0, 100, 200, 255]], np.uint8)
    alpha = np.array([[255, 0, 128, 255]], np.uint8)
    img = to_bgr8(np.dstack([grey, alpha]))
    expected = np.round(grey * (alpha / 255) + 255 * (1 - alpha / 255)).astype(np.uint8)
    assert np.array_equal(img, np.dstack([expected] * 3))


@pytest.mark.parametrize(
    "array",
    [np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2, 3), np.int16), np.zeros((2, 2), np.int32)],
    ids=["five-channels", "int16", "int32"],
)
def test_unusual_sample_layouts_are_unsupported(array):
    with pytest.raises(UnsupportedFormat):
        to_bgr8(array)


def test_grey_16_bit_tiff(photo_bgr, make_tiff):
    grey = cv2.cvtColor(photo_bgr, cv2.COLOR_BGR2GRAY)
    img = decode(make_tiff(grey.astype(np.uint16) * 257))
    assert np.array_equal(img, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))


def test_adobe_cmyk_jpeg_comes_out_as_bgr(photo_bgr):
    rgb = photo_bgr[..., ::-1].astype(np.float64) / 255
    black = 1 - rgb.max(axis=2)
    rest = np.maximum(1 - black, 1e-9)[..., None]
    ink = np.dstack([(1 - rgb - black[..., None]) / rest, black])  # C, M, Y, K in 0..1
    stored = np.round((1 - ink) * 255).astype(np.uint8)  # Adobe writers store inverted ink
    data = cmyk_jpeg(stored)
    assert data[data.index(b"\xff\xc0") + 9] == 4  # four components in the frame header
    img = decode(data)
    assert_bgr8(img, 300, 451)
    assert mean_abs_diff(img, photo_bgr) < 3


def cmyk_jpeg(stored: np.ndarray, quality: int = 95) -> bytes:
    """A four-component Adobe JPEG (APP14, transform 0) built from four grey JPEGs.

    Baseline JPEG allows one scan per component, so each grey encoding's
    quantisation table, Huffman tables and entropy-coded data are reused as
    that component's scan; only the table ids and headers change.
    """
    height, width = stored.shape[:2]
    tables, scans = b"", b""
    for k in range(4):
        grey = encode_grey_jpeg(stored[..., k], quality)
        for marker, payload in jpeg_segments(grey):
            if marker == 0xDB:  # one 8-bit table, id 0 -> id k
                tables += segment(0xDB, bytes([k]) + payload[1:65])
            elif marker == 0xC4:  # Huffman tables may be redefined before each scan
                scans += segment(0xC4, payload)
            elif marker == 0xDA:
                scans += segment(0xDA, bytes([1, k + 1, 0x00, 0, 63, 0]))
            elif marker == "scan":
                scans += payload
    adobe = segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    frame = struct.pack(">BHHB", 8, height, width, 4)
    frame += b"".join(bytes([k + 1, 0x11, k]) for k in range(4))
    return b"\xff\xd8" + adobe + tables + segment(0xC0, frame) + scans + b"\xff\xd9"


def encode_grey_jpeg(plane: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(plane), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def jpeg_segments(jpeg: bytes):
    """Yield (marker, payload) for each segment up to SOS, then ("scan", entropy data)."""
    pos = 2
    while True:
        marker = jpeg[pos + 1]
        (length,) = struct.unpack_from(">H", jpeg, pos + 2)
        yield marker, jpeg[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xDA:
            yield "scan", jpeg[pos : jpeg.rindex(b"\xff\xd9")]
            return


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


# --- reduced JPEG decoding -----------------------------------------------------------


@pytest.fixture
def large_jpeg(photo_bgr, encode) -> tuple[np.ndarray, bytes]:
    big = cv2.resize(photo_bgr, (1804, 1200), interpolation=cv2.INTER_CUBIC)
    return big, encode(big, ".jpg", jpeg_quality=95)


@pytest.mark.parametrize(
    ("max_side", "factor"),
    [(2000, 1), (903, 1), (902, 2), (451, 4), (226, 4), (225, 8), (50, 8)],
)
def test_reduced_jpeg_decode_matches_resized_full_decode(large_jpeg, max_side, factor):
    big, data = large_jpeg
    img = decode(data, max_side=max_side)
    height, width = -(-1200 // factor), -(-1804 // factor)
    assert_bgr8(img, height, width)
    assert max(img.shape[:2]) >= min(max_side, 1804)
    full = decode(data)
    reference = cv2.resize(full, (width, height), interpolation=cv2.INTER_AREA) if factor > 1 else full
    assert mean_abs_diff(img, reference) < 2.5


def test_reduced_decode_still_honours_orientation(photo_bgr, encode, with_exif):
    upright = cv2.resize(photo_bgr, (1804, 1200), interpolation=cv2.INTER_CUBIC)
    data = with_exif(encode(stored_for(upright, 6), ".jpg", jpeg_quality=95), 6)
    img = decode(data, max_side=300)  # longest side 1804 >= 4 * 300
    assert_bgr8(img, 300, 451)
    assert mean_abs_diff(img, cv2.resize(upright, (451, 300), interpolation=cv2.INTER_AREA)) < 3


def test_max_side_does_not_shrink_other_formats(photo_bgr, encode):
    assert np.array_equal(decode(encode(photo_bgr, ".png"), max_side=50), photo_bgr)


@pytest.mark.parametrize("max_side", [0, -5])
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_max_side_must_be_positive(photo_bgr, encode, max_side, ext):
    with pytest.raises(ValueError, match="max_side"):
        decode(encode(photo_bgr, ext), max_side=max_side)


# --- the pixel cap -------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_huge_header_is_refused_before_any_decoding(monkeypatch):
    calls = []
    monkeypatch.setattr(decode_module.cv2, "imdecode", lambda *a: calls.append(a))
    data = png_header_only(50_000, 50_000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as err:
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls == []
    assert peak < 1_000_000  # a decoded 50000x50000 BGR image would be 7.5 GB
    assert "50000x50000" in err.value.message
    assert "2,500,000,000" in err.value.message and "50,000,000" in err.value.message
    assert err.value.details == {
        "width": 50_000,
        "height": 50_000,
        "pixels": 2_500_000_000,
        "max_pixels": 50_000_000,
    }


def test_pixel_cap_boundary(photo_bgr, encode):
    data = encode(photo_bgr, ".png")
    assert decode(data, max_pixels=451 * 300).shape == (300, 451, 3)
    with pytest.raises(ImageTooLarge):
        decode(data, max_pixels=451 * 300 - 1)


def test_pixel_cap_must_be_positive(photo_bgr, encode):
    with pytest.raises(ValueError, match="max_pixels"):
        decode(encode(photo_bgr, ".png"), max_pixels=0)


def test_lying_webp_header_cannot_sneak_past_the_cap(photo_bgr, encode):
    # The extended header claims 10x10; the bitstream inside is 451x300.
    data = webp_with_exif(encode(photo_bgr, ".webp", webp_quality=101), 10, 10, b"")
    with pytest.raises(CorruptImage):
        decode(data, max_pixels=100)


def test_decoded_size_must_match_the_header(photo_bgr, encode, monkeypatch):
    monkeypatch.setattr(decode_module, "probe", lambda data: ImageInfo("png", 450, 300, 1))
    with pytest.raises(CorruptImage, match="decoded size 451x300 does not match the PNG header's 450x300"):
        decode(encode(photo_bgr, ".png"))


# --- broken and foreign input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".jpg", {}), (".png", {}), (".webp", {"webp_quality": 80}), (".gif", {}), (".bmp", {})],
)
def test_truncated_images_are_corrupt(photo_bgr, encode, ext, params):
    data = encode(photo_bgr, ext, **params)
    with pytest.raises(CorruptImage, match="could not be decoded"):
        decode(data[: len(data) * 6 // 10])


def test_truncated_tiff_is_corrupt(photo_bgr, encode, make_tiff):
    # Directory first, pixels cut: the header probes but the strip is short.
    data = make_tiff(photo_bgr[..., ::-1].copy())
    with pytest.raises(CorruptImage, match="could not be decoded"):
        decode(data[: len(data) * 6 // 10])
    # OpenCV writes the directory after the pixels, so cutting loses the header.
    data = encode(photo_bgr, ".tiff")
    with pytest.raises(CorruptImage, match="TIFF header is cut short"):
        decode(data[: len(data) * 6 // 10])


@pytest.mark.parametrize("chunk", [b"IHDR", b"IDAT"])
def test_png_with_bad_crc_is_corrupt(photo_bgr, encode, chunk):
    # libpng treats a CRC error in a critical chunk as fatal.
    data = bytearray(encode(photo_bgr, ".png"))
    start = data.index(chunk)
    (length,) = struct.unpack_from(">I", data, start - 4)
    data[start + 4 + length] ^= 0xFF
    with pytest.raises(CorruptImage, match="PNG data could not be decoded"):
        decode(bytes(data))


def test_opencv_exceptions_become_corrupt_image(photo_bgr, encode, monkeypatch):
    def failing(*_args):
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp: error: (-215:Assertion failed) width > 0")

    monkeypatch.setattr(decode_module.cv2, "imdecode", failing)
    with pytest.raises(CorruptImage, match="JPEG data could not be decoded: .*Assertion failed"):
        decode(encode(photo_bgr, ".jpg"))


RANDOM_BYTES = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("data", [b"", RANDOM_BYTES], ids=["empty", "random"])
def test_empty_and_random_bytes_are_not_images(data):
    with pytest.raises(InvalidImage, match="not an image") as err:
        decode(data)
    assert type(err.value) is InvalidImage


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect/></svg>', "SVG"),
        (b"<!doctype html><title>x</title>", "HTML"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "PDF"),
    ],
)
def test_foreign_documents_are_unsupported(data, name):
    with pytest.raises(UnsupportedFormat, match=f"^{name} is not supported"):
        decode(data)


def test_bmp_variants(photo_bgr, encode):
    data = bytearray(encode(photo_bgr, ".bmp"))
    (offset,) = struct.unpack_from("<I", data, 10)
    stride = (451 * 3 + 3) // 4 * 4  # rows pad to 4 bytes
    rows = np.frombuffer(bytes(data[offset:]), np.uint8).reshape(300, stride)
    top_down = data[:offset] + rows[::-1].tobytes()
    struct.pack_into("<i", top_down, 22, -300)
    assert np.array_equal(decode(bytes(top_down)), photo_bgr)

    # OS/2 1.x: 12-byte core header, same bottom-up rows.
    core = b"BM" + struct.pack("<IHHI", 26 + rows.size, 0, 0, 26) + struct.pack("<IHHHH", 12, 451, 300, 1, 24)
    assert np.array_equal(decode(core + rows.tobytes()), photo_bgr)


# --- decoding cost bounded from the header ----------------------------------------------

from tests.hostile import corpus as hostile  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture
def imdecode_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = decode_module.cv2.imdecode

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(decode_module.cv2, "imdecode", counting)
    return calls


def png_ihdr_only(width: int, height: int, depth: int, colour: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_tiff_with_repeated_size_tags_is_refused_before_decoding(imdecode_calls):
    # libtiff would decode 4000x4000 (16 MB) although the last size tags say 64x48.
    with pytest.raises(CorruptImage, match="ambiguous"):
        decode(hostile.tiff_grey_deflate(4000, 4000, claimed=(64, 48)))
    assert imdecode_calls == []


def test_jpeg_with_too_many_scans_is_refused_before_decoding(imdecode_calls):
    data = hostile.jpeg_repeated_scans(400, 300, decode_module.MAX_JPEG_SCANS + 1)
    with pytest.raises(ImageTooComplex) as err:
        decode(data)
    assert imdecode_calls == []
    assert err.value.status == 422
    assert err.value.details == {"scans": decode_module.MAX_JPEG_SCANS + 1, "max_scans": decode_module.MAX_JPEG_SCANS}


def test_jpeg_with_the_most_scans_allowed_decodes():
    data = hostile.jpeg_repeated_scans(400, 300, decode_module.MAX_JPEG_SCANS)
    assert decode(data).shape == (300, 400, 3)


def test_ordinary_progressive_jpeg_decodes(photo_bgr, encode):
    data = encode(photo_bgr, ".jpg", jpeg_progressive=1)
    assert 1 < probe(data).scans <= 12
    assert decode(data).shape == (300, 451, 3)


def test_sixteen_bit_rgba_at_49_mp_is_refused_before_decoding(imdecode_calls):
    # 8 bytes a pixel, held twice while OpenCV hands its image over: ~750 MiB.
    with pytest.raises(ImageTooLarge, match="4 x 16-bit samples") as err:
        decode(png_ihdr_only(7000, 7000, 16, 6))
    assert imdecode_calls == []
    assert err.value.details["decode_bytes"] > decode_module.DEFAULT_MAX_DECODE_BYTES
    assert err.value.details["max_decode_bytes"] == decode_module.DEFAULT_MAX_DECODE_BYTES


@pytest.mark.parametrize(("depth", "colour"), [(8, 0), (8, 2), (8, 3), (8, 4), (8, 6)])
def test_every_8_bit_png_within_the_pixel_cap_fits_the_memory_cap(depth, colour):
    info = probe(png_ihdr_only(7071, 7071, depth, colour))
    assert decode_module.decode_bytes(info) <= decode_module.DEFAULT_MAX_DECODE_BYTES


def test_memory_cap_counts_bytes_per_sample():
    deep = hostile.png_flat(1000, 1000, bit_depth=16, colour_type=6)  # 8 MB decoded
    shallow = hostile.png_flat(1000, 1000, bit_depth=8, colour_type=6)  # 4 MB decoded
    with pytest.raises(ImageTooLarge):
        decode(deep, max_decode_bytes=12 * MiB)
    assert decode(shallow, max_decode_bytes=12 * MiB).shape == (1000, 1000, 3)


def test_memory_cap_is_judged_at_the_reduced_jpeg_size(photo_bgr, encode):
    data = encode(cv2.resize(photo_bgr, (1600, 1200)), ".jpg")
    full = decode_module.decode_bytes(probe(data))
    with pytest.raises(ImageTooLarge):
        decode(data, max_decode_bytes=full - 1)
    assert decode(data, max_side=200, max_decode_bytes=full // 8).shape == (150, 200, 3)


def test_progressive_jpeg_counts_its_coefficients(photo_bgr, encode):
    img = cv2.resize(photo_bgr, (1600, 1200))
    baseline = probe(encode(img, ".jpg"))
    progressive = probe(encode(img, ".jpg", jpeg_progressive=1))
    assert baseline.buffer_bytes == 0
    # 4:2:0: per 16x16 MCU, four luma and two chroma blocks of 64 two-byte coefficients.
    assert progressive.buffer_bytes == (1600 // 16) * (1200 // 16) * 6 * 128


def test_gif_screen_counts_as_bgra():
    info = probe(hostile.gif_tiny_frame(7071, 7071))
    assert (info.channels, info.sample_bytes) == (4, 1)
    assert decode_module.decode_bytes(info) == 2 * 7071 * 7071 * 4


def test_deep_tiff_counts_its_samples(encode):
    data = encode(np.zeros((50, 40, 4), np.float32), ".tiff")
    info = probe(data)
    assert (info.channels, info.sample_bytes) == (4, 4)
    assert decode_module.decode_bytes(info) >= 2 * 50 * 40 * 16


def test_memory_cap_must_be_positive(photo_bgr, encode):
    with pytest.raises(ValueError, match="max_decode_bytes"):
        decode(encode(photo_bgr, ".png"), max_decode_bytes=0)


@pytest.mark.parametrize(
    "raw",
    [
        np.random.default_rng(1).integers(0, 65536, (700, 9, 4), dtype=np.uint16),
        np.random.default_rng(2).integers(0, 256, (700, 9, 2), dtype=np.uint8),
        np.random.default_rng(3).random((700, 9, 4)).astype(np.float32),
        np.random.default_rng(4).integers(0, 256, (700, 9), dtype=np.uint8),
    ],
    ids=["16-bit BGRA", "grey+alpha", "float BGRA", "grey"],
)
def test_conversion_in_bands_equals_whole_image_conversion(raw):
    assert raw.shape[0] > 2 * decode_module._BAND_ROWS
    assert np.array_equal(to_bgr8(raw), decode_module._band_to_bgr8(raw))


def test_exif_typed_long8_decodes():
    img = hostile.photo("chelsea", 160, 120)
    data = hostile.jpeg_with_exif_block(hostile.jpeg(img), hostile.exif_long8(6))
    assert decode(data).shape == (120, 160, 3)


def test_only_the_first_tiff_page_is_decoded(imdecode_calls):
    # The probe sizes the first directory; the decoder must read that one and no other.
    data = hostile.tiff_pages((64, 48), (4000, 4000))
    assert probe(data) == ImageInfo("tiff", 64, 48, 1)
    assert decode(data).shape == (48, 64, 3)
