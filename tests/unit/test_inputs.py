"""Validation at the HTTP boundary: integer parameters, ids and keys, multipart file names."""

from __future__ import annotations

import pytest

from pictrace.catalog import layout
from pictrace.catalog.catalog import Catalog
from pictrace.config import Config
from pictrace.errors import BadRequest
from pictrace.http.bodies import clean_filename, parse_body
from pictrace.http.inputs import parse_int

SHA = "ab" * 32


# --- k and limit -------------------------------------------------------------------


@pytest.mark.parametrize("raw, value", [("5", 5), ("1", 1), ("50", 50), ("007", 7)])
def test_ascii_decimal_integers_are_accepted(raw: str, value: int) -> None:
    assert parse_int("k", raw, 5, 1, 50) == value


@pytest.mark.parametrize("raw", [None, ""])
def test_an_absent_parameter_takes_its_default(raw: str | None) -> None:
    assert parse_int("k", raw, 5, 1, 50) == 5


@pytest.mark.parametrize(
    "raw",
    [
        "\uff15",  # fullwidth 5
        "\u0663",  # Arabic-Indic 3
        "\u0967\u0966",  # Devanagari 10
        "\U0001d7d3",  # mathematical bold 5
        "1_0",
        "+5",
        " 5",
        "5 ",
        "5\n",
        "-1",
        "1e1",
        "0x5",
        "5.0",
        "9" * 4000,  # int() would spend quadratic time on it
    ],
)
def test_only_ascii_decimal_digits_make_an_integer(raw: str) -> None:
    with pytest.raises(BadRequest, match="k must be an integer from 1 to 50"):
        parse_int("k", raw, 5, 1, 50)


@pytest.mark.parametrize("raw", ["0", "51"])
def test_integers_outside_the_range_are_refused(raw: str) -> None:
    with pytest.raises(BadRequest, match=f"got {int(raw)}"):
        parse_int("k", raw, 5, 1, 50)


# --- ids, cursors and upload keys --------------------------------------------------------


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "0", "\x00"])
def test_an_id_with_anything_after_it_is_not_an_id(suffix: str) -> None:
    assert layout.is_image_id(SHA)
    assert not layout.is_image_id(SHA + suffix)


@pytest.mark.parametrize("suffix", ["\n", "/", "0", ".json"])
def test_an_upload_key_with_anything_after_it_is_not_one(suffix: str) -> None:
    key = layout.new_upload_key()
    assert layout.is_upload_key(key)
    assert not layout.is_upload_key(key + suffix)


class ListingStore:
    """Just enough of a store to see what a page of the catalog would list."""

    def __init__(self) -> None:
        self.listed: list[str] = []

    def list(self, prefix: str, *, start_after: str = "", limit: int | None = None):
        self.listed.append(start_after)
        return iter(())


def test_a_cursor_with_a_trailing_newline_is_refused_before_listing() -> None:
    # "<id>\n.json" sorts before "<id>.json": listing after it would repeat the cursor's own record.
    store = ListingStore()
    catalog = Catalog(store, Config())  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="cursor"):
        catalog.page(10, SHA + "\n")
    assert store.listed == []
    catalog.page(10, SHA)
    assert store.listed[0] == layout.record_key(SHA)


# --- multipart file names -------------------------------------------------------------------

BOUNDARY = "b0undary"


def multipart_event(disposition: str, content: bytes = b"\xff\xd8\xff image") -> dict:
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return {
        "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        "body": body.decode("latin-1"),
        "isBase64Encoded": False,
    }


def filename_of(disposition: str) -> str:
    parsed = parse_body(multipart_event(disposition), 1 << 20)
    assert parsed.image is not None
    return parsed.filename


@pytest.mark.parametrize(
    "disposition, name",
    [
        ('form-data; name="file"; filename="kitten.jpg"', "kitten.jpg"),
        ("form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC%20rates.jpg", "€ rates.jpg"),
        ("form-data; name=\"file\"; filename*=utf-8'de'K%C3%A4tzchen.jpg", "Kätzchen.jpg"),
        ("form-data; name=\"file\"; filename*=iso-8859-1''caf%E9.jpg", "café.jpg"),
        # RFC 6266: the extended value wins over the ASCII fallback, in either order.
        ("form-data; name=\"file\"; filename=\"EUR rates.jpg\"; filename*=UTF-8''%E2%82%AC.jpg", "€.jpg"),
        ("form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC.jpg; filename=\"EUR.jpg\"", "€.jpg"),
        # Continuations (RFC 2231 section 3).
        ("form-data; name=\"file\"; filename*0*=UTF-8''a%E2%82; filename*1*=%ACb.jpg", "a€b.jpg"),
        ("form-data; name*=UTF-8''file; filename=x.jpg", "x.jpg"),
    ],
)
def test_multipart_file_names_are_decoded(disposition: str, name: str) -> None:
    assert filename_of(disposition) == name


@pytest.mark.parametrize(
    "disposition, name",
    [
        ('form-data; name="file"; filename="C:\\\\Users\\\\me\\\\cat.jpg"', "cat.jpg"),
        ('form-data; name="file"; filename="../../index/manifest.json"', "manifest.json"),
        ("form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("form-data; name=\"file\"; filename*=UTF-8''a%00b%0Ac%E2%80%AEgpj.exe", "abcgpj.exe"),
        ("form-data; name=\"file\"; filename*=UTF-8''%FF%FE.jpg", "\ufffd\ufffd.jpg"),
        ("form-data; name=\"file\"; filename*=UTF-8''" + "a" * 300 + ".jpg", "a" * 200),
    ],
)
def test_multipart_file_names_are_sanitised(disposition: str, name: str) -> None:
    assert filename_of(disposition) == name


def test_no_file_name_is_text_of_a_tuple() -> None:
    name = filename_of("form-data; name=\"file\"; filename*=UTF-8''photo.jpg")
    assert name == "photo.jpg" and "(" not in name


@pytest.mark.parametrize(
    "raw, clean", [("a\u00a0b.jpg", "a b.jpg"), ("  x.jpg\t", "x.jpg"), ("\u200b", ""), ("", "")]
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean
