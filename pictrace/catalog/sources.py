"""Turning a URL into image bytes: an image URL, or a web page whose images count.

Every fetch goes through the guarded client (public addresses only, bounded
bytes, time and redirects); what the body *is* is decided by its magic bytes.
A page that was fetched but is too large or holds no image is the input's
fault (413, 422), not the remote's: only failing to fetch is a 502.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from pictrace.adapters.fetch import FetchPolicy, fetch, fetch_many, harvest_images, primary_image, sniff_kind
from pictrace.adapters.fetch.client import Resolve
from pictrace.config import Config
from pictrace.errors import BadRequest, InvalidImage, PayloadTooLarge, PicTraceError, UnsupportedFormat

# Test seams, never changed in production: the resolver used when a caller
# passes none (None: the operating system's), and the policy class whose
# ``check_address`` vets every address.  Tests of address filtering swap in
# a stub resolver and a policy that trusts exactly one loopback test server.
RESOLVE: Resolve | None = None
POLICY: type[FetchPolicy] = FetchPolicy


@dataclass(frozen=True)
class Source:
    data: bytes
    image_url: str = ""
    page_url: str = ""

    @property
    def name(self) -> str:
        return self.image_url.rsplit("/", 1)[-1][:200] if self.image_url else ""


@dataclass(frozen=True)
class Failed:
    url: str
    error: PicTraceError

    def to_dict(self) -> dict:
        return {"url": self.url, **self.error.to_dict()}


def image_policy(config: Config) -> FetchPolicy:
    return POLICY(
        max_bytes=config.max_fetch_bytes,
        connect_timeout=config.fetch_connect_timeout,
        read_timeout=config.fetch_read_timeout,
        total_timeout=config.fetch_total_timeout,
        allow_private=config.allow_private_urls,
    )


def page_policy(config: Config) -> FetchPolicy:
    return replace(image_policy(config), max_bytes=config.max_page_bytes)


def check_urls(urls: object, config: Config) -> list[str]:
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise BadRequest("urls must be a non-empty list of non-empty strings")
    if len(urls) > config.max_urls:
        raise BadRequest(f"at most {config.max_urls} urls per request, got {len(urls)}")
    return list(dict.fromkeys(urls))


def one_image(url: str, config: Config, resolve: Resolve | None = None) -> Source:
    """The image a URL stands for: the image itself, or a page's main image (og:image, else the largest)."""
    return asyncio.run(_one_image(url, config, resolve or RESOLVE))


async def _one_image(url: str, config: Config, resolve: Resolve | None) -> Source:
    got = await fetch(url, image_policy(config), resolve=resolve)
    kind = sniff_kind(got.body)
    if kind == "image":
        return Source(got.body, image_url=got.url)
    if kind != "html":
        raise UnsupportedFormat(f"{url} is neither an image nor an HTML page")
    if len(got.body) > config.max_page_bytes:
        raise PayloadTooLarge(f"page {url} is larger than {config.max_page_bytes} bytes", url=url)
    target = primary_image(got.body, got.url)
    if target is None:
        raise InvalidImage(f"page {url} has no image", url=url)
    img = await fetch(target, image_policy(config), resolve=resolve)
    if sniff_kind(img.body) != "image":
        raise UnsupportedFormat(f"{target} (the main image of {url}) is not an image")
    return Source(img.body, image_url=img.url, page_url=got.url)


def all_images(urls: list[str], config: Config, resolve: Resolve | None = None) -> list[Source | Failed]:
    """Every image the URLs stand for: an image URL gives itself, a page gives all its images."""
    return asyncio.run(_all_images(urls, config, resolve or RESOLVE))


async def _all_images(urls: list[str], config: Config, resolve: Resolve | None) -> list[Source | Failed]:
    out: list[Source | Failed] = []
    pages: list[tuple[str, bytes]] = []
    for url, got in zip(urls, await fetch_many(urls, image_policy(config), resolve=resolve)):
        if isinstance(got, PicTraceError):
            out.append(Failed(url, got))
            continue
        kind = sniff_kind(got.body)
        if kind == "image":
            out.append(Source(got.body, image_url=got.url))
        elif kind == "html" and len(got.body) <= config.max_page_bytes:
            pages.append((got.url, got.body))
        elif kind == "html":
            out.append(Failed(url, PayloadTooLarge(f"page is larger than {config.max_page_bytes} bytes")))
        else:
            out.append(Failed(url, UnsupportedFormat("neither an image nor an HTML page")))
    for page_url, html in pages:
        targets = harvest_images(html, page_url, max_images=config.max_page_images)
        if not targets:
            out.append(Failed(page_url, InvalidImage("the page has no images")))
            continue
        for target, got in zip(targets, await fetch_many(targets, image_policy(config), resolve=resolve)):
            if isinstance(got, PicTraceError):
                out.append(Failed(target, got))
            elif sniff_kind(got.body) != "image":
                out.append(Failed(target, UnsupportedFormat("not an image")))
            else:
                out.append(Source(got.body, image_url=got.url, page_url=page_url))
    return out
