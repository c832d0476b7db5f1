"""What one ``{"urls": [...]}`` request of 100 gallery pages fetches, holds and takes.

A loopback web site serves 100 pages; each shows one logo (the same on every
page) and 49 images of its own, 20 KiB each (bytes that sniff as PNG; nothing
here decodes them). The request's images are gathered the way ``POST /images``
gathers them (``pictrace.catalog.sources.all_images``) with the default
configuration, and the run reports the fetches the site saw, the images and
bytes handed on to be added, how often the logo was fetched, the entries
returned (images, failures and skipped), the time, and the process's peak RSS.

    python -m benchmarks.fetch_budget                   # this tree's pictrace/
    PYTHONPATH=/tmp/before python -m benchmarks.fetch_budget   # another tree's

(``git archive <rev> | tar -x -C /tmp/before`` makes such a tree.)
"""

from __future__ import annotations

import http.server
import json
import resource
import threading
import time
from ipaddress import IPv4Address, IPv6Address

from pictrace.adapters.fetch import FetchPolicy
from pictrace.catalog import sources
from pictrace.config import Config

PAGES = 100
PER_PAGE = 49
IMAGE_BYTES = 20 * 1024


def image(seed: str) -> bytes:
    head = b"\x89PNG\r\n\x1a\n" + seed.encode() + b"\0"
    return head + b"p" * (IMAGE_BYTES - len(head))


def page(k: int) -> bytes:
    imgs = "".join(f"<img src='/img/{k}-{i}'>" for i in range(PER_PAGE))
    return f"<!doctype html><html><body><img src='/logo'>{imgs}</body></html>".encode()


class TrustLoopback(FetchPolicy):
    """Production rules, except that the loopback site is allowed."""

    def check_address(self, ip: IPv4Address | IPv6Address) -> None:
        if ip != IPv4Address("127.0.0.1"):
            super().check_address(ip)


def serve(hits: list[str]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hits.append(self.path)
            kind, _, rest = self.path.strip("/").partition("/")
            body = page(int(rest)) if kind == "page" else image(self.path if kind == "img" else "logo")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    hits: list[str] = []
    server = serve(hits)
    sources.POLICY = TrustLoopback
    sources.RESOLVE = lambda host, port: ["127.0.0.1"]
    urls = [f"http://gallery.example.test:{server.server_address[1]}/page/{k}" for k in range(PAGES)]
    start = time.perf_counter()
    taken = sources.all_images(urls, Config())
    seconds = time.perf_counter() - start
    kept = [t for t in taken if isinstance(t, sources.Source)]
    print(
        json.dumps(
            {
                "fetches": len(hits),
                "images_kept": len(kept),
                "bytes_kept": sum(len(t.data) for t in kept),
                "logo_fetches": hits.count("/logo"),
                "entries": len(taken),
                "seconds": round(seconds, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )
    server.shutdown()


if __name__ == "__main__":
    main()
