"""Turning a URL into image bytes: an image URL, or a web page whose images count.

Every fetch goes through the guarded client (public addresses only, bounded
bytes, time and redirects); what the body *is* is decided by its magic bytes.
A page that was fetched but is too large or holds no image is the input's
fault (413, 422), not the remote's: only failing to fetch is a 502.

All the fetches of one request share one budget (``Config.max_request_*``):
bytes held at once, image fetches, and seconds. A request for several
images is truncated, not refused: what fitted is returned, and every image
left out is a :class:`Skipped` saying which limit it met.  Identical bytes
are kept once (checked by sha256, before anything decodes them) and a URL
several pages name is fetched once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field, replace

from pictrace.adapters.fetch import (
    FetchBudget,
    Fetched,
    FetchPolicy,
    fetch,
    fetch_many,
    harvest_images,
    primary_image,
    sniff_kind,
)
from pictrace.adapters.fetch.client import Resolve
from pictrace.config import Config
from pictrace.errors import (
    BadRequest,
    BudgetExceeded,
    FetchError,
    InvalidImage,
    PayloadTooLarge,
    PicTraceError,
    UnsupportedFormat,
)

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


@dataclass(frozen=True)
class Skipped:
    """An image a request named but did not take: a duplicate, or past the request's budget.

    ``reason`` is ``duplicate`` (same bytes as ``same_as``, an image of this
    request) or the budget limit it met: ``request_bytes``, ``request_images``
    or ``request_time``.
    """

    url: str
    reason: str
    message: str
    details: dict = field(default_factory=dict)

    @classmethod
    def over_budget(cls, url: str, error: BudgetExceeded) -> "Skipped":
        details = {k: v for k, v in error.details.items() if k != "limit"}
        return cls(url, str(error.details["limit"]), error.message, details)

    def to_dict(self) -> dict:
        return {"url": self.url, "reason": self.reason, "message": self.message, **self.details}


Taken = Source | Failed | Skipped


def request_budget(config: Config) -> FetchBudget:
    """A fresh budget for the fetches of one request."""
    return FetchBudget(
        max_bytes=config.max_request_fetch_bytes,
        max_images=config.max_request_images,
        seconds=config.max_request_fetch_seconds,
    )


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
    """The image a URL stands for: the image itself, or a page's main image (og:image, else the largest).

    The page and its image share one request budget. Running out of its time
    is the remote being slow, a :class:`FetchError` (502) like any timeout.
    """
    try:
        return asyncio.run(_one_image(url, config, resolve or RESOLVE))
    except BudgetExceeded as over:
        raise _as_timeout(url, over) from None


def _as_timeout(url: str, over: BudgetExceeded) -> PicTraceError:
    """A request that wanted one URL and ran out of time: the remote was too slow (502)."""
    if over.details.get("limit") != "request_time":
        return over
    return FetchError(f"fetching {url} took longer than the request's {over.details['seconds']:g} s", url=url)


async def _one_image(url: str, config: Config, resolve: Resolve | None) -> Source:
    budget = request_budget(config)
    got = await fetch(url, image_policy(config), resolve=resolve, budget=budget)
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
    budget.refund(len(got.body))
    img = await fetch(target, image_policy(config), resolve=resolve, budget=budget)
    if sniff_kind(img.body) != "image":
        raise UnsupportedFormat(f"{target} (the main image of {url}) is not an image")
    return Source(img.body, image_url=img.url, page_url=got.url)


def all_images(urls: list[str], config: Config, resolve: Resolve | None = None) -> list[Taken]:
    """Every image the URLs stand for: an image URL gives itself, a page gives all its images.

    One entry per image (or per URL that failed): the URLs' own images,
    then each page's in page order, then the page images past the request's
    image budget. Whatever the budget or a duplicate left out is a
    :class:`Skipped`.
    """
    return asyncio.run(_all_images(urls, config, resolve or RESOLVE))


@dataclass
class _Harvest:
    """What one request has taken so far."""

    budget: FetchBudget
    out: list[Taken] = field(default_factory=list)
    by_sha: dict[str, str] = field(default_factory=dict)  # sha256 -> URL of the first image with it

    def image(self, url: str, got: Fetched, page_url: str = "") -> None:
        """Keep an image, unless its bytes were already taken or no image slot is left."""
        sha = hashlib.sha256(got.body).hexdigest()
        first = self.by_sha.get(sha)
        if first is not None:
            self.budget.refund(len(got.body))
            self.out.append(Skipped(url, "duplicate", f"the same bytes as {first}", {"same_as": first}))
            return
        try:
            self.budget.take_image()
        except BudgetExceeded as over:
            self.budget.refund(len(got.body))
            self.out.append(Skipped.over_budget(url, over))
            return
        self.by_sha[sha] = url
        self.out.append(Source(got.body, image_url=got.url, page_url=page_url))

    def failed(self, url: str, error: PicTraceError) -> None:
        if isinstance(error, BudgetExceeded):
            self.out.append(Skipped.over_budget(url, error))
        else:
            self.out.append(Failed(url, error))


async def _all_images(urls: list[str], config: Config, resolve: Resolve | None) -> list[Taken]:
    taken = _Harvest(request_budget(config))
    budget = taken.budget
    pages: list[tuple[str, list[str]]] = []
    named = set(urls)
    for url, got in zip(urls, await fetch_many(urls, image_policy(config), resolve=resolve, budget=budget)):
        if isinstance(got, BudgetExceeded) and len(urls) == 1:
            got = _as_timeout(url, got)  # one URL, one answer, as on a search
        if isinstance(got, PicTraceError):
            taken.failed(url, got)
            continue
        kind = sniff_kind(got.body)
        if kind == "image":
            taken.image(url, got)
            continue
        # A page is read at once and dropped: only its image URLs are kept.
        budget.refund(len(got.body))
        if kind == "html" and len(got.body) <= config.max_page_bytes:
            targets = harvest_images(got.body, got.url, max_images=config.max_page_images)
            if not targets:
                taken.failed(got.url, InvalidImage("the page has no images"))
            pages.append((got.url, targets))
        elif kind == "html":
            taken.failed(url, PayloadTooLarge(f"page is larger than {config.max_page_bytes} bytes"))
        else:
            taken.failed(url, UnsupportedFormat("neither an image nor an HTML page"))
    planned = _plan(pages, named, budget.images_left)
    targets = [target for target, _ in planned.fetch]
    for (target, page_url), got in zip(
        planned.fetch, await fetch_many(targets, image_policy(config), resolve=resolve, budget=budget)
    ):
        if isinstance(got, PicTraceError):
            taken.failed(target, got)
        elif sniff_kind(got.body) != "image":
            budget.refund(len(got.body))
            taken.failed(target, UnsupportedFormat("not an image"))
        else:
            taken.image(target, got, page_url)
    for target, _ in planned.skipped:
        taken.failed(target, budget.too_many_images())
    return taken.out


@dataclass
class _Plan:
    fetch: list[tuple[str, str]] = field(default_factory=list)  # (image URL, page URL)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _plan(pages: list[tuple[str, list[str]]], named: set[str], slots: int) -> _Plan:
    """Which pages' images to fetch: each URL once, in page order, at most ``slots``.

    A URL the request named itself, or that an earlier page named, was or
    will be fetched already and is left out without a word.
    """
    plan, seen = _Plan(), set(named)
    for page_url, targets in pages:
        for target in targets:
            if target in seen:
                continue
            seen.add(target)
            (plan.fetch if len(plan.fetch) < slots else plan.skipped).append((target, page_url))
    return plan
