"""Fixtures for the command line: run ``pictrace`` in-process against the session stack."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from pictrace.cli import main
from tests.conftest import jpeg, sample_bgr


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture
def run(capsys, monkeypatch):
    """``run(*args, api=...)``: call ``main`` and capture its exit code, stdout and stderr."""
    monkeypatch.delenv("PICTRACE_API_URL", raising=False)
    monkeypatch.delenv("PICTRACE_API_KEY", raising=False)

    def invoke(*args: str, api: str | None = None) -> Run:
        capsys.readouterr()
        code = main(([] if api is None else ["--api", api]) + list(args))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return invoke


@pytest.fixture
def pictrace(run, stack):
    """Like ``run``, pointed at the session stack's API."""

    def invoke(*args: str) -> Run:
        return run(*args, api=stack.api_url)

    return invoke


def write_jpeg(path: Path, img: np.ndarray, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg(img, quality))
    return path


def write_png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())
    return path


def edited(name: str) -> np.ndarray:
    """A sample photo cropped on every side and mirrored, as a user might find it re-posted."""
    img = sample_bgr(name)
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[h // 12 : h - h // 12, w // 12 : w - w // 12, :][:, ::-1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    """A loopback web server for files under ``tmp_path / "site"``; yields (folder, base URL)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "site"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
