"""GET / (the web page) and GET /health.

The page's sources are ``pictrace/web/index.html`` plus the stylesheet and
scripts it links.  They are inlined into one response: with an API key
required, every route but ``/`` and ``/health`` needs an ``X-Api-Key``
header, which a browser never sends for ``<script src>``.  A Content
Security Policy then allows exactly those inline blocks, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib import resources

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from pictrace import __version__
from pictrace.runtime import services

router = Router()

_STYLESHEET = re.compile(r'<link rel="stylesheet" href="([\w.-]+\.css)">')
_SCRIPT = re.compile(r'<script src="([\w.-]+\.js)"></script>')


@lru_cache(maxsize=1)
def page() -> tuple[str, str]:
    """The assembled page and its Content-Security-Policy header value."""
    web = resources.files("pictrace.web")
    html = web.joinpath("index.html").read_text(encoding="utf-8")
    styles: list[str] = []
    scripts: list[str] = []

    def inline(tag: str, closing: str, bucket: list[str]):
        def replace(match: re.Match) -> str:
            text = web.joinpath(match.group(1)).read_text(encoding="utf-8")
            # The text must not end its own element early.
            if closing in text.lower():
                raise ValueError(f"{match.group(1)} contains {closing!r}")
            bucket.append(text)
            return f"<{tag}>\n{text}</{tag}>"

        return replace

    html = _STYLESHEET.sub(inline("style", "</style", styles), html)
    html = _SCRIPT.sub(inline("script", "</script", scripts), html)
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_hash(s) for s in scripts),
            "style-src " + " ".join(_hash(s) for s in styles),
            # Images come from presigned storage URLs and the URLs users search for.
            "img-src 'self' http: https: data: blob:",
            # ?api=<url> may name another deployment; large files are PUT to storage.
            "connect-src 'self' http: https:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return html, csp


def _hash(text: str) -> str:
    # The browser hashes the element's exact text content.
    digest = hashlib.sha256(f"\n{text}".encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@router.get("/")
def index() -> Response[str]:
    html, csp = page()
    return Response(
        status_code=200,
        content_type=content_types.TEXT_HTML,
        body=html,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/health")
def health() -> dict:
    s = services()
    return {"status": "ok", "version": __version__, "bucket": s.config.bucket}
