"""Content sniffing and image harvesting from HTML. Pure: no network."""

import codecs

import cv2
import numpy as np
import pytest

from pictrace.adapters.fetch.page import PAGE_MAX_BYTES, harvest_images, primary_image, sniff_kind

PAGE = "https://www.example.test/articles/cats/index.html"


def _encoded(extension: str) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(extension, pixels)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("extension", [".jpg", ".png", ".bmp", ".tiff", ".webp"])
def test_real_encoded_images_sniff_as_images(extension: str) -> None:
    assert sniff_kind(_encoded(extension)) == "image"


def test_gif_magic_sniffs_as_image() -> None:
    # OpenCV cannot write GIF; a minimal 1x1 GIF89a header and trailer.
    gif = (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
        b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    assert sniff_kind(gif) == "image"
    assert sniff_kind(b"GIF88a" + gif[6:]) == "other"


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body></body></html>",
        b"  \n\t<!doctype HTML>\n<title>x</title>",
        b"<HTML lang=en>",
        b"<head><title>t</title></head>",
        b"<body>hello</body>",
        codecs.BOM_UTF8 + b"\n<!doctype html>",
        codecs.BOM_UTF16_LE + "<!doctype html><p>".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "<html>".encode("utf-16-be"),
        b"<!-- generated -->\n<?xml version='1.0'?>\n<html xmlns='http://www.w3.org/1999/xhtml'>",
    ],
)
def test_html_sniffs_as_html(body: bytes) -> None:
    assert sniff_kind(body) == "html"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"plain text that mentions html but no tag",
        b'{"html": "<p>"}',
        b"%PDF-1.7\n",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"BMW is a car maker, not a bitmap",  # "BM" without a DIB header
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"x" * 1024 + b"<html>",  # the tag is past the first KiB
    ],
)
def test_other_bodies_sniff_as_other(body: bytes) -> None:
    assert sniff_kind(body) == "other"


def test_magic_bytes_win_over_an_html_looking_tail() -> None:
    assert sniff_kind(_encoded(".png") + b"<html>") == "image"


def test_page_cap_is_two_mebibytes() -> None:
    assert PAGE_MAX_BYTES == 2 * 2**20


def test_meta_images_come_first_then_images_in_document_order() -> None:
    html = """
    <html><head>
      <meta property="og:image" content="/share/og.jpg">
      <meta name="twitter:image" content="https://cdn.example.test/tw.jpg">
    </head><body>
      <img src="first.png">
      <img src="/second.png">
      <meta property="og:image:url" content="late-og.jpg">
      <img src="../third.gif">
    </body></html>
    """
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/share/og.jpg",
        "https://cdn.example.test/tw.jpg",
        "https://www.example.test/articles/cats/late-og.jpg",
        "https://www.example.test/articles/cats/first.png",
        "https://www.example.test/second.png",
        "https://www.example.test/articles/third.gif",
    ]


def test_srcset_contributes_its_largest_candidate_first() -> None:
    html = """
    <img src="small.jpg" srcset="small.jpg 320w, large.jpg 1280w, medium.jpg 640w">
    <img src="a1.jpg" srcset="a1.jpg, a3.jpg 3x, a2.jpg 2x">
    """
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/articles/cats/large.jpg",
        "https://www.example.test/articles/cats/small.jpg",
        "https://www.example.test/articles/cats/a3.jpg",
        "https://www.example.test/articles/cats/a1.jpg",
    ]


def test_srcset_urls_may_contain_commas() -> None:
    html = (
        '<img srcset="https://img.example.test/w_200,h_100/p.jpg 200w, '
        'https://img.example.test/w_800,h_400/p.jpg 800w">'
    )
    assert harvest_images(html, PAGE) == ["https://img.example.test/w_800,h_400/p.jpg"]


def test_malformed_srcset_descriptors_are_skipped() -> None:
    html = '<img srcset="bad.jpg hugew, nan.jpg nanx, good.jpg 2x">'
    assert harvest_images(html, PAGE) == ["https://www.example.test/articles/cats/good.jpg"]


def test_picture_sources_and_lazy_attributes_are_harvested() -> None:
    html = """
    <picture>
      <source srcset="hero.avif 1x, hero@2x.avif 2x" type="image/avif">
      <img src="hero.jpg" alt="">
    </picture>
    <video><source src="clip.mp4"></video>
    <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="lazy.jpg">
    <img data-srcset="lazy-1.jpg 1x, lazy-2.jpg 2x">
    """
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/articles/cats/hero@2x.avif",
        "https://www.example.test/articles/cats/hero.jpg",
        "https://www.example.test/articles/cats/lazy.jpg",
        "https://www.example.test/articles/cats/lazy-2.jpg",
    ]


def test_base_href_changes_how_relative_urls_resolve() -> None:
    html = """
    <img src="before-base.jpg">
    <base href="/static/img/">
    <base href="https://ignored.example.test/">
    <img src="after.jpg">
    """
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/static/img/before-base.jpg",
        "https://www.example.test/static/img/after.jpg",
    ]


def test_non_http_urls_are_dropped_and_duplicates_collapse() -> None:
    html = """
    <meta property="og:image" content="https://www.example.test/a.jpg#top">
    <img src="data:image/png;base64,iVBORw0KGgo=">
    <img src="javascript:alert(1)">
    <img src="file:///etc/passwd">
    <img src="ftp://files.example.test/x.jpg">
    <img src=" /a.jpg ">
    <img src="//cdn.example.test/b.jpg">
    <img src="">
    <img>
    <img src="/a.jpg">
    """
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/a.jpg",
        "https://cdn.example.test/b.jpg",
    ]


def test_harvest_stops_at_max_images() -> None:
    html = "".join(f'<img src="/p/{n}.jpg">' for n in range(100))
    found = harvest_images(html, PAGE, max_images=5)
    assert found == [f"https://www.example.test/p/{n}.jpg" for n in range(5)]
    assert len(harvest_images(html, PAGE)) == 50


def test_bytes_are_decoded_by_their_declared_charset() -> None:
    html = '<meta charset="iso-8859-1"><img src="/caf\u00e9.jpg">'.encode("iso-8859-1")
    assert harvest_images(html, PAGE) == ["https://www.example.test/caf\u00e9.jpg"]


def test_broken_markup_still_yields_complete_tags() -> None:
    # Unclosed elements and a missing ">" do not stop the scan; a tag cut off
    # at the end of the (possibly truncated) page is ignored.
    html = (
        b"<html><body><div><img src='/one.jpg'<p>unclosed "
        b"<img src=/two.jpg alt=x><td><img src=/cut.jpg"
    )
    assert harvest_images(html, PAGE) == [
        "https://www.example.test/one.jpg",
        "https://www.example.test/two.jpg",
    ]


def test_primary_image_prefers_open_graph() -> None:
    html = """
    <meta name="twitter:image" content="/tw.jpg">
    <img src="/big.jpg" width="2000" height="1000">
    <meta property="og:image" content="/og.jpg">
    """
    assert primary_image(html, PAGE) == "https://www.example.test/og.jpg"


def test_primary_image_falls_back_to_twitter_card() -> None:
    html = (
        '<img src="/big.jpg" width="2000" height="1000">'
        '<meta name="twitter:image" content="/tw.jpg">'
    )
    assert primary_image(html, PAGE) == "https://www.example.test/tw.jpg"


def test_primary_image_picks_the_largest_declared_img() -> None:
    html = """
    <img src="/logo.png" width="120" height="40">
    <img src="/undeclared.jpg">
    <img src="/hero.jpg" width="1200px" height="600">
    <img src="/tall.jpg" width="300" height="900">
    """
    assert primary_image(html, PAGE) == "https://www.example.test/hero.jpg"


def test_primary_image_falls_back_to_the_first_img() -> None:
    html = (
        '<img src="data:,x"><img src="/first.jpg">'
        '<img src="/second.jpg" width="100%" height="50%">'
    )
    assert primary_image(html, PAGE) == "https://www.example.test/first.jpg"


def test_primary_image_skips_tracking_pixels() -> None:
    html = '<img src="/pixel.gif" width="1" height="1"><img src="/photo.jpg">'
    assert primary_image(html, PAGE) == "https://www.example.test/photo.jpg"


def test_primary_image_ignores_picture_sources_and_empty_pages() -> None:
    assert primary_image("<p>no images here</p>", PAGE) is None
    assert primary_image('<img src="data:image/png;base64,AAAA">', PAGE) is None
    html = '<picture><source srcset="/wide.avif 2000w"><img src="/fallback.jpg"></picture>'
    assert primary_image(html, PAGE) == "https://www.example.test/fallback.jpg"
