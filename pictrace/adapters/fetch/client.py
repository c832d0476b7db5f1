"""Fetch an untrusted URL without letting it reach anything but the public internet.

Every hop (the first URL and each redirect, followed here by hand) is checked
with :func:`~pictrace.adapters.fetch.addresses.check_url`. Host names are
resolved exactly once, inside :class:`GuardedResolver`, which hands aiohttp's
connector only the addresses that passed :meth:`FetchPolicy.check_address`; the
connector then connects to those addresses and no others, so a second lookup
cannot rebind the name to an internal address. TLS still verifies against,
and the Host header still carries, the host name from the URL.

Bodies are streamed against a byte cap and never decompressed, so neither a
lying Content-Length nor a compression bomb can exhaust memory. A
:class:`~pictrace.adapters.fetch.budget.FetchBudget` passed to :func:`fetch`
or :func:`fetch_many` also bounds what all the fetches of one request hold
together, and when they must stop.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from pictrace import __version__
from pictrace.errors import BadRequest, BlockedURL, FetchError, PayloadTooLarge, PicTraceError

from .addresses import IPAddress, check_address, check_url, parse_host
from .budget import FetchBudget

Resolve = Callable[[str, int], Sequence[str] | Awaitable[Sequence[str]]]
"""``resolve(host, port) -> [ip, ...]``; may be a plain or an async function."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HEADERS = {
    "User-Agent": f"PicTrace/{__version__}",
    "Accept": "image/*, text/html;q=0.9, */*;q=0.5",
    # Compressed bodies would defeat the byte cap; images are compressed anyway.
    "Accept-Encoding": "identity",
}


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch. Timeouts are in seconds, ``max_bytes`` per response.

    ``allow_private`` exists only so a local demo stack can fetch from its own
    127.0.0.1 server; it lifts the loopback and private ranges, nothing else.
    """

    max_bytes: int = 20 * 2**20
    connect_timeout: float = 5  # also bounds the DNS lookup
    read_timeout: float = 10
    total_timeout: float = 20
    max_redirects: int = 3
    allow_private: bool = False

    def check_address(self, ip: IPAddress) -> None:
        """Raise :class:`BlockedURL` if this policy forbids connecting to ``ip``."""
        check_address(ip, allow_private=self.allow_private)


@dataclass(frozen=True)
class Fetched:
    """A successful response: final URL after redirects, status, declared type, body.

    ``content_type`` is the server's claim (media type only, None if absent);
    decide what the body is with :func:`~pictrace.adapters.fetch.page.sniff_kind`.
    """

    url: str
    status: int
    content_type: str | None
    body: bytes


async def system_resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the operating system's resolver (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_allowed(
    host: str, port: int, policy: FetchPolicy, resolve: Resolve = system_resolve
) -> list[IPAddress]:
    """Resolve ``host`` once and return only the addresses ``policy`` allows.

    IP literals (in any spelling :func:`parse_host` understands) are not sent
    to ``resolve``. Raises :class:`BlockedURL` if no allowed address remains
    and :class:`FetchError` if the name does not resolve.
    """
    target = parse_host(host)
    if isinstance(target, str):
        found = await _lookup(resolve, target, port, policy.connect_timeout)
    else:
        found = [target]
    allowed, refusals = [], []
    for ip in found:
        try:
            policy.check_address(ip)
        except BlockedURL as refusal:
            refusals.append(refusal.message)
        else:
            allowed.append(ip)
    if not allowed:
        raise BlockedURL(f"host {host!r} is refused: {'; '.join(refusals)}", host=host)
    return allowed


async def _lookup(resolve: Resolve, host: str, port: int, timeout: float) -> list[IPAddress]:
    try:
        async with asyncio.timeout(timeout):
            answer = resolve(host, port)
            if inspect.isawaitable(answer):
                answer = await answer
    except (OSError, TimeoutError) as exc:
        raise FetchError(f"could not resolve host {host!r}", host=host) from exc
    try:
        found = [ip_address(a) for a in answer]
    except ValueError as exc:
        raise FetchError(f"resolver returned a malformed address for {host!r}") from exc
    if not found:
        raise FetchError(f"host {host!r} has no addresses", host=host)
    return found


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses allowed by a :class:`FetchPolicy`."""

    def __init__(self, policy: FetchPolicy, resolve: Resolve | None = None) -> None:
        self.policy = policy
        self._resolve = resolve or system_resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = []
        for ip in await resolve_allowed(host, port, self.policy, self._resolve):
            ip_family = socket.AF_INET if isinstance(ip, IPv4Address) else socket.AF_INET6
            if family in (socket.AF_UNSPEC, ip_family):
                results.append(
                    ResolveResult(
                        hostname=host, host=str(ip), port=port, family=ip_family, proto=0, flags=0
                    )
                )
        if not results:
            # An OSError is what aiohttp expects from a resolver that finds nothing.
            raise OSError(f"host {host!r} has no allowed address in family {family!r}")
        return results

    async def close(self) -> None:
        """Nothing to release: lookups are delegated to ``resolve``."""


# Sessions built by open_session, with the policy their resolver enforces. A
# session from anywhere else would resolve and connect unchecked.
_GUARDED_SESSIONS: weakref.WeakKeyDictionary[aiohttp.ClientSession, FetchPolicy] = (
    weakref.WeakKeyDictionary()
)


def open_session(
    policy: FetchPolicy = FetchPolicy(), resolve: Resolve | None = None, *, limit: int = 8
) -> aiohttp.ClientSession:
    """Create a session whose connections can only reach addresses ``policy`` allows.

    Use it as ``async with open_session(policy) as session`` to share
    connections between :func:`fetch` calls made with the same ``policy``.
    Cookies are not kept and proxy settings from the environment are ignored
    (a proxy would resolve names itself).
    """
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolve), use_dns_cache=False, limit=limit
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=_HEADERS,
        trust_env=False,
        auto_decompress=False,
    )
    _GUARDED_SESSIONS[session] = policy
    return session


async def fetch(
    url: str,
    policy: FetchPolicy = FetchPolicy(),
    *,
    session: aiohttp.ClientSession | None = None,
    resolve: Resolve | None = None,
    budget: FetchBudget | None = None,
) -> Fetched:
    """Fetch ``url`` under ``policy``, following at most ``policy.max_redirects``.

    ``session`` must come from :func:`open_session` with the same policy (and
    then ``resolve`` belongs to that call); without one, a session is opened
    for this fetch. Raises :class:`BlockedURL` for a refused scheme, address or
    redirect target, :class:`BadRequest` for a malformed or over-long URL,
    :class:`PayloadTooLarge` past ``policy.max_bytes`` and :class:`FetchError`
    for timeouts, connection failures, non-2xx statuses and too many redirects.

    With a ``budget``, the body stays charged to it on success (the caller
    refunds it when it drops the body), and :class:`BudgetExceeded` is raised
    when the budget's bytes or time run out; a fetch begun after its deadline
    never connects.
    """
    if session is None:
        async with open_session(policy, resolve) as own:
            return await fetch(url, policy, session=own, budget=budget)
    if resolve is not None:
        raise ValueError("pass resolve to open_session() when you supply a session")
    if _GUARDED_SESSIONS.get(session) != policy:
        raise ValueError("session must come from open_session() with the same policy")
    if budget is None:
        return await _fetch_in_time(url, policy, session, None)
    budget.start()
    budget.check_time()
    try:
        async with asyncio.timeout_at(budget.deadline):
            return await _fetch_in_time(url, policy, session, budget)
    except TimeoutError:
        # Only the budget's own deadline lands here: the policy's timeouts
        # are turned into FetchError inside.
        raise budget.out_of_time() from None


async def _fetch_in_time(
    url: str, policy: FetchPolicy, session: aiohttp.ClientSession, budget: FetchBudget | None
) -> Fetched:
    try:
        async with asyncio.timeout(policy.total_timeout):
            return await _follow(url, policy, session, budget)
    except TimeoutError as exc:
        raise FetchError(
            f"fetching {url} took longer than {policy.total_timeout}s", url=url
        ) from exc


def fetch_sync(
    url: str, policy: FetchPolicy = FetchPolicy(), resolve: Resolve | None = None
) -> Fetched:
    """:func:`fetch` on a fresh event loop; not callable from inside a running loop."""
    return asyncio.run(fetch(url, policy, resolve=resolve))


async def fetch_many(
    urls: Iterable[str],
    policy: FetchPolicy = FetchPolicy(),
    concurrency: int = 8,
    resolve: Resolve | None = None,
    budget: FetchBudget | None = None,
) -> list[Fetched | PicTraceError]:
    """Fetch ``urls`` with at most ``concurrency`` in flight; results keep input order.

    A URL that fails yields its error object (:class:`FetchError`,
    :class:`BlockedURL`, :class:`PayloadTooLarge`, :class:`BadRequest` or, with
    a ``budget``, :class:`BudgetExceeded`) in its slot instead of aborting the
    others. Unexpected exceptions still propagate.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    async with open_session(policy, resolve, limit=concurrency) as session:

        async def one(url: str) -> Fetched | PicTraceError:
            async with gate:
                try:
                    return await fetch(url, policy, session=session, budget=budget)
                except PicTraceError as error:
                    return error

        return list(await asyncio.gather(*(one(url) for url in urls)))


async def _follow(
    url: str, policy: FetchPolicy, session: aiohttp.ClientSession, budget: FetchBudget | None
) -> Fetched:
    target = _checked(url, policy)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=policy.connect_timeout, sock_read=policy.read_timeout
    )
    try:
        for _ in range(policy.max_redirects + 1):
            async with session.get(target, allow_redirects=False, timeout=timeout) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    return await _accept(response, policy, budget)
                next_url = response.url
            target = _checked_redirect(next_url, location, policy)
    except aiohttp.ServerTimeoutError as exc:
        raise FetchError(f"timed out fetching {target}", url=str(target)) from exc
    except aiohttp.ClientError as exc:
        raise FetchError(f"could not fetch {target}: {exc}", url=str(target)) from exc
    raise FetchError(f"{url} led to more than {policy.max_redirects} redirects", url=url)


def _checked(url: str | URL, policy: FetchPolicy) -> URL:
    """Parse and vet one hop; IP literals are refused before any connection."""
    parsed, host = check_url(url)
    if not isinstance(host, str):
        policy.check_address(host)
    return parsed


def _checked_redirect(current: URL, location: str, policy: FetchPolicy) -> URL:
    try:
        return _checked(current.join(URL(location)), policy)
    except (BadRequest, BlockedURL) as refusal:
        raise BlockedURL(
            f"redirect to {location[:200]!r} refused: {refusal.message}", location=location[:200]
        ) from refusal
    except (ValueError, UnicodeError) as exc:
        raise BlockedURL(f"redirect to malformed URL {location[:200]!r}") from exc


async def _accept(
    response: aiohttp.ClientResponse, policy: FetchPolicy, budget: FetchBudget | None
) -> Fetched:
    """Turn a final response into :class:`Fetched`, enforcing status, encoding and size."""
    if not 200 <= response.status < 300:
        raise FetchError(
            f"HTTP {response.status} from {response.url}",
            status=response.status,
            url=str(response.url),
        )
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(f"compressed response (Content-Encoding: {encoding}) refused")
    body = await _read_capped(response, policy.max_bytes, budget)
    declared = response.content_type if "Content-Type" in response.headers else None
    return Fetched(url=str(response.url), status=response.status, content_type=declared, body=body)


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, budget: FetchBudget | None = None
) -> bytes:
    """Read the body, stopping as soon as it passes ``max_bytes`` or ``budget`` runs out.

    Chunks are charged to ``budget`` as they arrive; if the read fails for any
    reason (including cancellation), what it charged is refunded.
    """
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        response.close()
        raise PayloadTooLarge(
            f"response declares {declared} bytes, more than the {max_bytes} allowed",
            limit=max_bytes,
        )
    body = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            if budget is not None:
                budget.charge(len(chunk))
            body += chunk
            if len(body) > max_bytes:
                raise PayloadTooLarge(f"response is larger than {max_bytes} bytes", limit=max_bytes)
    except BaseException:
        # Close instead of draining: the rest may be endless.
        response.close()
        if budget is not None:
            budget.refund(len(body))
        raise
    return bytes(body)
