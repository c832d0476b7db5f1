"""Which URLs, hosts and addresses an untrusted fetch may reach.

Pure functions, no I/O. A user-supplied URL must never make the service talk
to itself, its VPC or the cloud metadata endpoint, so three questions are
answered here, each in one place:

* :func:`check_url` -- is the URL itself acceptable (scheme, length,
  credentials, a host that parses)?
* :func:`parse_host` -- what does the host mean to a resolver? Numeric IPv4
  spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``), bracketed
  IPv6, ``localhost``, trailing dots and Unicode names are normalised the
  way the WHATWG URL standard and ``inet_aton`` read them, so a disguised
  address cannot pass as a name.
* :func:`check_address` -- is an IP address globally routable? Private,
  loopback, link-local, shared, multicast, unspecified and reserved ranges are
  refused, including IPv4 addresses wrapped in IPv6 (mapped, NAT64, 6to4).
  Cloud metadata endpoints are refused under every policy.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import idna
from yarl import URL

from pictrace.errors import BadRequest, BlockedURL

IPAddress = IPv4Address | IPv6Address

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})

# Reasons that FetchPolicy.allow_private lifts; everything else stays refused.
PRIVATE_REASONS = frozenset({"loopback", "private"})

# Cloud metadata, credential, DNS and time endpoints. They sit inside ranges
# refused anyway, but fd00:ec2::/32 lies in fc00::/7, which allow_private
# lifts; naming them first makes "metadata" a reason no policy lifts.
_METADATA: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("169.254.169.254/32"),  # EC2, GCP, Azure, OpenStack instance metadata
    IPv4Network("169.254.170.2/32"),  # ECS task credentials
    IPv4Network("169.254.169.123/32"),  # Amazon Time Sync
    IPv4Network("169.254.169.253/32"),  # Amazon-provided DNS
    IPv4Network("100.100.100.200/32"),  # Alibaba Cloud metadata
    IPv6Network("fd00:ec2::/32"),  # AWS's IPv6 metadata (::254), DNS (::253) and time (::23, ::123)
)

# IANA special-purpose registries (RFC 6890 and successors). A /24 is refused
# whole even where the registry marks a single address global: nothing a user
# should fetch an image from lives there.
_REFUSED_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

# Only 2000::/3 is allocated as global unicast; everything outside it that is
# not listed here (IPv4-compatible ::/96, discard 100::/64, local NAT64
# 64:ff9b:1::/48, ...) falls to "reserved".
_REFUSED_V6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),
        ("fec0::/10", "private"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "reserved"),
        ("3fff::/20", "reserved"),
    )
)
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")
_NAT64_V6 = IPv6Network("64:ff9b::/96")
# Deprecated IPv4-compatible (::a.b.c.d) and SIIT IPv4-translated
# (::ffff:0:a.b.c.d) spellings: "reserved" already refuses them, but one that
# spells a metadata endpoint is reported as such.
_IPV4_SPELLINGS_V6 = (IPv6Network("::/96"), IPv6Network("::ffff:0:0:0/96"))

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")


def classify(ip: IPAddress | str) -> str | None:
    """Return why ``ip`` may not be fetched from, or None if it is global.

    The reason is one of ``metadata`` (a cloud metadata endpoint),
    ``unspecified``, ``loopback``, ``private``, ``shared``, ``link-local``,
    ``multicast`` or ``reserved``. An IPv6 address
    that carries an IPv4 address (``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
    6to4 ``2002::/16``) is judged by the IPv4 address it reaches.
    """
    ip = ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(ip, IPv6Address):
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            return classify(embedded)
        if any(ip in spelling for spelling in _IPV4_SPELLINGS_V6):
            if _is_metadata(IPv4Address(int(ip) & 0xFFFFFFFF)):
                return "metadata"
        table: tuple[tuple[IPv4Network | IPv6Network, str], ...] = _REFUSED_V6
    else:
        table = _REFUSED_V4
    if _is_metadata(ip):
        return "metadata"
    for network, reason in table:
        if ip in network:
            return reason
    if isinstance(ip, IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None


def _is_metadata(ip: IPAddress) -> bool:
    return any(ip in network for network in _METADATA)


def embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address routes to, if it is mapped, NAT64 or 6to4."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_V6:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(ip: IPAddress | str, *, allow_private: bool = False) -> None:
    """Raise :class:`BlockedURL` unless ``ip`` is globally routable.

    ``allow_private`` lifts only the loopback and private ranges (for a local
    demo stack); metadata endpoints (even ``fd00:ec2::254``, inside the
    private fc00::/7), link-local and the other ranges stay refused.
    """
    parsed = ip_address(ip) if isinstance(ip, str) else ip
    reason = classify(parsed)
    if reason is None or (allow_private and reason in PRIVATE_REASONS):
        return
    inner = embedded_ipv4(parsed) if isinstance(parsed, IPv6Address) else None
    note = f" (it reaches {inner})" if inner is not None else ""
    raise BlockedURL(
        f"address {parsed} is {reason}{note}; only public addresses may be fetched",
        address=str(parsed),
        reason=reason,
    )


def parse_host(host: str) -> IPAddress | str:
    """Normalise a URL host to an IP address or a lower-case ASCII host name.

    Follows what a browser or resolver would connect to: IPv6 literals
    (bracketed or bare, no zone id), every numeric IPv4 spelling
    ``inet_aton`` accepts, ``localhost`` and ``*.localhost`` (RFC 6761, always
    loopback), one trailing dot, and Unicode names (IDNA 2008 with UTS #46
    mapping). Raises :class:`BlockedURL` for anything that is neither a valid
    address nor a valid DNS name.
    """
    if host.startswith("[") and host.endswith("]"):
        return _parse_ipv6(host[1:-1])
    if ":" in host:
        return _parse_ipv6(host)
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]  # a fully qualified name means the same to a resolver
    if not name:
        raise BlockedURL("the URL has no host")
    if not name.isascii():
        name = _idna_encode(name)
    labels = name.split(".")
    if _is_number(labels[-1]):
        return _parse_ipv4(labels, host)
    _check_labels(labels, host)
    if labels[-1] == "localhost":
        return IPv4Address("127.0.0.1")
    return name


def check_url(url: str | URL) -> tuple[URL, IPAddress | str]:
    """Validate an untrusted URL and return it parsed, with its normalised host.

    Refuses (:class:`BlockedURL`) schemes other than http and https and URLs
    carrying credentials; refuses (:class:`BadRequest`) URLs longer than
    :data:`MAX_URL_LENGTH` or that do not parse. The host is normalised with
    :func:`parse_host`; whether an address is allowed is left to
    :func:`check_address` so that the caller's policy applies.
    """
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise BadRequest(f"URL is longer than {MAX_URL_LENGTH} characters", length=len(text))
    try:
        parsed = url if isinstance(url, URL) else URL(text)
    except (ValueError, UnicodeError) as exc:
        raise BadRequest(f"malformed URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        shown = parsed.scheme or "none"
        raise BlockedURL(f"URL scheme {shown!r} is not allowed; use http or https", scheme=shown)
    if parsed.user is not None or parsed.password is not None:
        raise BlockedURL("URLs with credentials (user:password@) are not allowed")
    if len(str(parsed)) > MAX_URL_LENGTH:
        raise BadRequest(f"URL is longer than {MAX_URL_LENGTH} characters once encoded")
    return parsed, parse_host(parsed.raw_host or "")


def _parse_ipv6(text: str) -> IPv6Address:
    if "%" in text:
        raise BlockedURL(f"IPv6 zone identifiers are not allowed: {text!r}")
    try:
        return IPv6Address(text)
    except ValueError as exc:
        raise BlockedURL(f"invalid IPv6 address {text!r}") from exc


def _is_number(label: str) -> bool:
    # WHATWG "ends in a number": a host whose last label is numeric is an IPv4
    # address or nothing, never a name.
    return (label.isdigit() and label.isascii()) or _HEX_NUMBER.fullmatch(label) is not None


def _parse_ipv4(labels: list[str], host: str) -> IPv4Address:
    """Read 1-4 dotted numbers (decimal, 0-octal, 0x-hex) as ``inet_aton`` does."""
    invalid = BlockedURL(f"host {host!r} is not a valid IPv4 address")
    if len(labels) > 4:
        raise invalid
    numbers = [_parse_ipv4_number(label) for label in labels]
    if any(n is None for n in numbers):
        raise invalid
    *leading, last = numbers
    # Leading parts are single bytes; the last part fills the remaining bytes.
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        raise invalid
    value = last
    for position, n in enumerate(leading):
        value += n << (8 * (3 - position))
    return IPv4Address(value)


def _parse_ipv4_number(label: str) -> int | None:
    if not label or not label.isascii():
        return None
    if label.startswith("0x"):
        digits, base = label[2:], 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    if not digits:
        return 0  # "0x" alone is zero
    try:
        return int(digits, base)
    except ValueError:
        return None


def _idna_encode(name: str) -> str:
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise BlockedURL(f"invalid international host name {name!r}: {exc}") from exc


def _check_labels(labels: list[str], host: str) -> None:
    if len(".".join(labels)) > 253:
        raise BlockedURL(f"host name {host!r} is longer than 253 characters")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise BlockedURL(f"invalid host name {host!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise BlockedURL(f"invalid international host name {host!r}") from exc
