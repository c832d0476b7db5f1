"""``pictrace serve``: the demo run, a keyed server stopped with Ctrl-C, a taken port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cli.conftest import closed_port, write_jpeg, write_png
from tests.conftest import sample_bgr

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def clean_env() -> dict[str, str]:
    """This process's environment without what the session stack set, so the child starts afresh."""
    prefixes, names = ("AWS_", "PICTRACE_", "POWERTOOLS_"), ("BUCKET_NAME", "SCORE_FUNCTION_NAME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in names}
    env["PYTHONPATH"] = str(REPO)
    # The default data folder is under XDG_DATA_HOME: each child gets its own, never the user's.
    env["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="pictrace-serve-test-")
    return env


def serve(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pictrace", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=REPO,
        **popen,
    )


def test_ctrl_c_stops_serve_even_when_started_with_sigint_ignored():
    # What a shell without job control does to a command started with "&".
    port = closed_port()
    proc = serve("--no-demo", "--port", str(port), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().strip() == f"web page: http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err.splitlines()[-1] == "stopped"


def test_serve_once_seeds_the_demo_and_finds_coffee_first():
    port = closed_port()
    proc = serve("--once", "--port", str(port))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.split()[:2] == ["rank", "score"]))
    first = lines[header + 1].split()
    assert first[0] == "1" and first[7] == "coffee.png"
    assert float(first[1]) > float(lines[header + 2].split()[1])
    assert f"web page: http://127.0.0.1:{port}/" in lines
    assert re.search(r"demo catalog: added \d+ ", err)
    assert "Traceback" not in err and "warning" not in err.lower()


def test_serve_requires_its_key_and_stops_cleanly_on_ctrl_c(run, monkeypatch, tmp_path):
    photo = write_jpeg(tmp_path / "moon.jpg", sample_bgr("moon"))
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve("--no-demo", "--port", str(port), "--api-key", "s3cret")
    try:
        assert proc.stdout.readline().strip() == f"web page: {url}/"
        for args in (["list"], ["add", str(photo), str(photo)]):  # add stops at the first refusal
            refused = run(*args, api=url)
            assert refused.code == 1 and refused.out == ""
            assert refused.err_lines == ["pictrace: error: 403 Forbidden (set PICTRACE_API_KEY)"]
        monkeypatch.setenv("PICTRACE_API_KEY", "s3cret")
        assert run("add", str(photo), api=url).code == 0
        listed = run("list", "--json", api=url)
        assert listed.code == 0 and '"total": 1' in listed.out
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.splitlines()[-1] == "stopped"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_allow_private_urls_lets_add_take_every_image_of_a_loopback_page(run, site):
    folder, base = site
    write_jpeg(folder / "img" / "coffee.jpg", sample_bgr("coffee"))
    write_png(folder / "img" / "coins.png", sample_bgr("coins"))
    (folder / "gallery.html").write_text(
        '<html><body><img src="img/coffee.jpg"><img src="img/coins.png"><img src="img/gone.jpg"></body></html>'
    )
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve("--no-demo", "--allow-private-urls", "--port", str(port))
    try:
        assert proc.stdout.readline().strip() == f"web page: {url}/"
        # One job: two concurrent adds of the same bytes may both report the image as new.
        result = run("add", "--jobs", "1", f"{base}/gallery.html", f"{base}/img/coffee.jpg", api=url)
        assert result.code == 1
        lines = result.out.splitlines()
        # One line per image, then the counts, then the failures.
        assert [line.split()[0] for line in lines[:3]] == ["added", "added", "duplicate"]
        assert lines[3] == "added 2, duplicates 1, failed 1"
        assert lines[4].startswith(f"  failed {base}/img/gone.jpg: fetch_failed: ")
        found = run("search", f"{base}/img/coins.png", "-k", "1", api=url)
        assert found.code == 0 and found.out.splitlines()[1].split()[7] == "coins.png"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_serve_on_a_taken_port_is_one_line(run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--once")
    assert result.code == 1
    assert len(result.err_lines) == 1
    assert result.err.startswith(f"pictrace: error: cannot listen on 127.0.0.1:{port}: ")


class HeldImage:
    """A loopback HTTP server whose one image is sent only once :meth:`release` is called."""

    def __init__(self, data: bytes) -> None:
        import http.server
        import threading

        self.requested, self.released = threading.Event(), threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requested.set()
                owner.released.wait(timeout=30)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/held.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_lets_the_add_in_flight_finish_before_exiting(tmp_path):
    import json
    import time
    import urllib.request

    from tests.conftest import jpeg

    held = HeldImage(jpeg(sample_bgr("coffee")))
    port = closed_port()
    proc = serve("--no-demo", "--allow-private-urls", "--port", str(port), "--data", str(tmp_path / "data"))
    answer: dict = {}
    try:
        assert proc.stdout.readline().strip() == f"web page: http://127.0.0.1:{port}/"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/images", data=json.dumps({"url": held.url}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )

        def add() -> None:
            with urllib.request.urlopen(request, timeout=60) as resp:
                answer.update(status=resp.status, body=json.loads(resp.read()))

        import threading

        client = threading.Thread(target=add)
        client.start()
        assert held.requested.wait(timeout=60)  # the add is in flight, fetching the image
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not refuses_connections(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refuses_connections(port)  # no longer accepting...
        held.release()
        client.join(timeout=60)
        _, err = proc.communicate(timeout=60)
    finally:
        held.close()
        if proc.poll() is None:
            proc.kill()
    assert answer.get("status") == 201, (answer, err[-3000:])  # ...but the add in flight was answered
    assert proc.returncode == 0 and err.splitlines()[-1] == "stopped"


def test_a_slow_request_holds_up_neither_health_nor_other_requests():
    import json
    import threading
    import urllib.request

    from tests.conftest import jpeg

    held = HeldImage(jpeg(sample_bgr("coffee")))
    port = closed_port()
    api = f"http://127.0.0.1:{port}"
    proc = serve("--no-demo", "--allow-private-urls", "--ephemeral", "--workers", "2", "--port", str(port))
    try:
        assert proc.stdout.readline().strip() == f"web page: {api}/"
        slow = urllib.request.Request(f"{api}/images", data=json.dumps({"url": held.url}).encode(),
                                      headers={"Content-Type": "application/json"}, method="POST")
        answers: list[int] = []
        client = threading.Thread(target=lambda: answers.append(urllib.request.urlopen(slow, timeout=60).status))
        client.start()
        assert held.requested.wait(timeout=60)  # one environment is now busy with the slow add
        with urllib.request.urlopen(f"{api}/health", timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        with urllib.request.urlopen(f"{api}/images", timeout=30) as resp:
            assert resp.status == 200
        assert not answers and client.is_alive()  # both were answered while the add still waited
        held.release()
        client.join(timeout=60)
        assert answers == [201]
    finally:
        held.close()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
