"""The client's edges: stdin queries, a server that is not PicTrace, a server that never answers."""

from __future__ import annotations

import io
import json
import socket
import sys

import pytest

from pictrace.client import Client, TimedOut, expand, multipart
from tests.cli.conftest import edited, write_jpeg, write_png
from tests.conftest import sample_bgr


def test_search_reads_the_query_from_stdin(pictrace, tmp_path, monkeypatch, empty_catalog):
    for name in ("moon", "horse", "camera"):
        write_png(tmp_path / f"{name}.png", sample_bgr(name))
    assert pictrace("add", str(tmp_path)).code == 0
    query = write_jpeg(tmp_path / "q" / "q.jpg", edited("camera"), quality=50)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(query.read_bytes())))
    result = pictrace("search", "-", "--json", "-k", "1")
    assert result.code == 0
    assert json.loads(result.out)["results"][0]["name"] == "camera.png"


def test_a_server_that_is_not_pictrace_is_one_line(run, site):
    folder, base = site
    (folder / "images").write_text("<html>a blog</html>")
    result = run("list", api=base)  # GET /images answers 200 with HTML
    assert result.code == 1
    assert result.err_lines == [f"pictrace: error: {base}/images did not answer with JSON; is it the PicTrace API?"]


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections queue in the backlog; nobody reads them
        client = Client(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        with pytest.raises(TimedOut, match="no answer from"):
            client.images()


def test_expand_walks_directories_for_image_suffixes_only(tmp_path):
    for rel in ("a.JPG", "sub/b.png", "sub/deep/c.webp", "sub/readme.md", "d.tiff"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    named = tmp_path / "sub" / "readme.md"
    labels = [s.label for s in expand([str(tmp_path), str(named), "https://example.com/p.html"])]
    assert labels == [
        str(tmp_path / "a.JPG"),
        str(tmp_path / "d.tiff"),
        str(tmp_path / "sub" / "b.png"),
        str(tmp_path / "sub" / "deep" / "c.webp"),
        str(named),  # named explicitly: sent whatever its suffix
        "https://example.com/p.html",
    ]


def test_multipart_carries_the_bytes_and_a_safe_filename():
    data = bytes(range(256))
    body, ctype = multipart(data, 'we"ird\r\nname.png')
    boundary = ctype.split("boundary=", 1)[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'filename="we_irdname.png"' in body
    assert b"Content-Type: image/png\r\n\r\n" + data + b"\r\n" in body

