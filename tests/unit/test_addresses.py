"""Address, host and URL vetting. Classification only: nothing here connects, names resolve through stubs."""

import asyncio
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from pictrace.adapters.fetch.addresses import (
    MAX_URL_LENGTH,
    check_address,
    check_url,
    classify,
    parse_host,
)
from pictrace.adapters.fetch.client import FetchPolicy, resolve_allowed
from pictrace.errors import BadRequest, BlockedURL

REFUSED = [
    # address, reason
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"),
    ("100.127.255.255", "shared"),
    ("169.254.169.254", "metadata"),
    ("169.254.0.1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("192.0.0.8", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("3fff::1", "reserved"),
    ("100::1", "reserved"),
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
    ("::8.8.8.8", "reserved"),
    ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64
    # IPv6 forms carrying a refused IPv4 address are judged by that address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b::169.254.169.254", "metadata"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "metadata"),
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below the shared range
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:2800::1",
    "2a00:1450:4001:81b::200e",
    "::ffff:93.184.216.34",
    "64:ff9b::93.184.216.34",  # NAT64 of a public address
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("address, reason", REFUSED)
def test_refused_addresses_name_their_reason(address: str, reason: str) -> None:
    assert classify(address) == reason
    with pytest.raises(BlockedURL) as raised:
        check_address(address)
    assert raised.value.details["reason"] == reason
    assert reason in raised.value.message


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert classify(address) is None
    check_address(address)
    check_address(ip_address(address))


def test_refusal_of_a_wrapped_address_names_the_inner_one() -> None:
    with pytest.raises(BlockedURL, match=r"reaches 169\.254\.169\.254"):
        check_address("::ffff:169.254.169.254")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.5", "fd00::1", "::ffff:127.0.0.1"]
)
def test_allow_private_lifts_loopback_and_private(address: str) -> None:
    with pytest.raises(BlockedURL):
        check_address(address)
    check_address(address, allow_private=True)


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1", "100.64.0.1", "240.0.0.1"]
)
def test_allow_private_keeps_metadata_and_special_ranges_refused(address: str) -> None:
    with pytest.raises(BlockedURL):
        check_address(address, allow_private=True)


# Cloud metadata, credentials and time endpoints, in every spelling that reaches them.
METADATA = [
    "169.254.169.254",  # EC2, GCP, Azure instance metadata
    "169.254.170.2",  # ECS task credentials
    "169.254.169.123",  # Amazon Time Sync
    "169.254.169.253",  # Amazon DNS
    "100.100.100.200",  # Alibaba Cloud metadata
    "fd00:ec2::254",  # EC2 instance metadata over IPv6
    "fd00:ec2::23",  # Amazon Time Sync over IPv6
    "fd00:ec2::123",
    "fd00:ec2::253",  # Amazon DNS over IPv6
    "FD00:EC2:0:0:0:0:0:254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:aa02",  # mapped 169.254.170.2
    "::ffff:100.100.100.200",
    "64:ff9b::169.254.170.2",  # NAT64
    "64:ff9b::6464:64c8",  # NAT64 of 100.100.100.200
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:6464:64c8::1",  # 6to4 of 100.100.100.200
    "::ffff:a9fe:a9fe",  # mapped 169.254.169.254, in hex
    "0:0:0:0:0:ffff:a9fe:a9fe",
    "::ffff:169.254.170.2",
    "::ffff:a9fe:a97b",  # mapped Time Sync
    "::169.254.169.254",  # IPv4-compatible (deprecated, still spelt)
    "::a9fe:aa02",
    "::ffff:0:169.254.169.254",  # IPv4-translated (SIIT)
    "::ffff:0:a9fe:aa02",
    "fd00:ec2:0:0:0:0:0:23",
    "fd00:0ec2::254",
]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_refused_whatever_the_policy(address: str) -> None:
    assert classify(address) == "metadata"
    for allow_private in (False, True):
        with pytest.raises(BlockedURL) as raised:
            check_address(address, allow_private=allow_private)
        assert raised.value.details["reason"] == "metadata"


METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fd00:ec2::23]/",
    "http://[FD00:EC2::254]:80/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:169.254.170.2]/",
    "http://[::ffff:a9fe:aa02]/",
    "http://[::169.254.169.254]/",
    "http://[::ffff:0:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://2852039166/",  # 169.254.169.254 as one number
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://0xa9.0xfe.0xaa.2/",  # 169.254.170.2
    "http://169.254.169.254./",
]


@pytest.mark.parametrize("url", METADATA_URLS)
def test_metadata_urls_are_refused_whatever_the_policy(url: str) -> None:
    _, host = check_url(url)
    for allow_private in (False, True):
        with pytest.raises(BlockedURL) as raised:
            check_address(host, allow_private=allow_private)
        assert raised.value.details["reason"] == "metadata", url


@pytest.mark.parametrize("answer", [["fd00:ec2::254"], ["::ffff:169.254.169.254"], ["169.254.170.2"], ["fd00:ec2::23", "fd00:ec2::254"]])
def test_a_name_resolving_to_metadata_is_refused_even_with_private_urls_allowed(answer: list[str]) -> None:
    policy = FetchPolicy(allow_private=True)
    with pytest.raises(BlockedURL, match="metadata"):
        asyncio.run(resolve_allowed("imds.example.test", 80, policy, lambda host, port: answer))


def test_with_private_urls_allowed_only_the_private_answers_of_a_name_are_kept() -> None:
    policy = FetchPolicy(allow_private=True)
    answer = ["fd00:ec2::254", "10.0.0.5", "169.254.169.254", "fd12::5"]
    kept = asyncio.run(resolve_allowed("mixed.example.test", 80, policy, lambda host, port: answer))
    assert [str(ip) for ip in kept] == ["10.0.0.5", "fd12::5"]


def test_the_rest_of_the_private_ipv6_range_stays_liftable() -> None:
    # Only AWS's reserved fd00:ec2::/32 is metadata; a LAN's ULA is private.
    assert classify("fd00:ec3::254") == "private"
    check_address("fd00:ec3::254", allow_private=True)


HOSTS = [
    # as written in a URL, what a resolver would make of it
    ("127.0.0.1", IPv4Address("127.0.0.1")),
    ("2130706433", IPv4Address("127.0.0.1")),
    ("017700000001", IPv4Address("127.0.0.1")),
    ("0x7f000001", IPv4Address("127.0.0.1")),
    ("0177.0.0.1", IPv4Address("127.0.0.1")),
    ("0x7f.1", IPv4Address("127.0.0.1")),
    ("0X7F.0.0.1", IPv4Address("127.0.0.1")),
    ("127.1", IPv4Address("127.0.0.1")),
    ("127.0.1", IPv4Address("127.0.0.1")),
    ("127.0.0.1.", IPv4Address("127.0.0.1")),
    ("0", IPv4Address("0.0.0.0")),
    ("0x", IPv4Address("0.0.0.0")),
    ("10.1", IPv4Address("10.0.0.1")),
    ("169.254.43518", IPv4Address("169.254.169.254")),
    ("0xa9.0xfe.0xa9.0xfe", IPv4Address("169.254.169.254")),
    ("2852039166", IPv4Address("169.254.169.254")),
    ("１２７.０.０.１", IPv4Address("127.0.0.1")),  # full-width digits map to ASCII
    ("[::1]", IPv6Address("::1")),
    ("::1", IPv6Address("::1")),
    ("[::ffff:127.0.0.1]", IPv6Address("::ffff:7f00:1")),
    ("[0:0:0:0:0:ffff:7f00:1]", IPv6Address("::ffff:7f00:1")),
    ("localhost", IPv4Address("127.0.0.1")),
    ("LocalHost.", IPv4Address("127.0.0.1")),
    ("api.localhost", IPv4Address("127.0.0.1")),
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("images.example.test", "images.example.test"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("Ⅸ.example", "ix.example"),
    ("my_host.example", "my_host.example"),
    ("0x7f.example", "0x7f.example"),  # only a numeric last label makes an address
    ("1e3", "1e3"),
]


@pytest.mark.parametrize("host, expected", HOSTS)
def test_parse_host_normalises_like_a_resolver(host: str, expected: object) -> None:
    assert parse_host(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "",
        ".",
        "256.0.0.1",
        "1.2.3.4.5",
        "127.0.0.256",
        "127.16777216",  # last part overflows the 24 bits left for it
        "4294967296",
        "08.0.0.1",  # 8 is not an octal digit
        "0x7g.1",
        "1..2",
        "example.123",  # a numeric last label must make a valid address
        "a..b",
        "example.com..",
        "-bad.example",
        "bad-.example",
        "ex ample.com",
        "exa%41mple.com",
        "a" * 64 + ".example",
        ("a" * 60 + ".") * 5 + "example",
        "xn--zz.example",  # not valid punycode
        "[fe80::1%eth0]",
        "fe80::1%25eth0",
        "[::1",
        "[12345::]",
        "⒈.com",  # maps to "1..com"
        "\u200b.example",
    ],
)
def test_parse_host_refuses_what_is_neither_address_nor_name(host: str) -> None:
    with pytest.raises(BlockedURL):
        parse_host(host)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "localhost", "localhost.",
     "0", "169.254.43518", "[::]", "[64:ff9b::a9fe:a9fe]", "[2002:a00:1::]"],
)
def test_disguised_internal_hosts_land_on_refused_addresses(host: str) -> None:
    with pytest.raises(BlockedURL):
        check_address(parse_host(host))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com:70/_GET",
        "ftp://example.com/a.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "ws://example.com/",
        "example.com/a.jpg",
        "//example.com/a.jpg",
    ],
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(BlockedURL, match="scheme"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://user:pass@example.com/", "https://user@example.com/", "http://:secret@example.com/"],
)
def test_check_url_refuses_credentials(url: str) -> None:
    with pytest.raises(BlockedURL, match="credentials"):
        check_url(url)


def test_check_url_refuses_over_long_urls() -> None:
    base = "https://example.com/"
    check_url(base + "a" * (MAX_URL_LENGTH - len(base)))
    with pytest.raises(BadRequest):
        check_url(base + "a" * (MAX_URL_LENGTH - len(base) + 1))


def test_check_url_measures_the_encoded_url_too() -> None:
    # 700 non-ASCII characters pass the raw length check but grow to 4200 once encoded.
    with pytest.raises(BadRequest, match="encoded"):
        check_url("https://example.com/" + "é" * 700)


@pytest.mark.parametrize("url", ["http://example.com:99999/", "http://example.com\\@evil.test/"])
def test_check_url_reports_malformed_urls_as_bad_requests(url: str) -> None:
    with pytest.raises(BadRequest):
        check_url(url)


@pytest.mark.parametrize(
    "url, host",
    [
        ("https://Example.COM/a.jpg?x=1", "example.com"),
        ("HTTP://images.example.test:8080/p", "images.example.test"),
        ("http://bücher.de/bild.png", "xn--bcher-kva.de"),
        ("http://2130706433/", IPv4Address("127.0.0.1")),
        ("http://[::ffff:127.0.0.1]:8080/", IPv6Address("::ffff:7f00:1")),
        ("http://93.184.216.34/", IPv4Address("93.184.216.34")),
        ("https://[2606:2800::1]/", IPv6Address("2606:2800::1")),
    ],
)
def test_check_url_returns_the_normalised_host(url: str, host: object) -> None:
    parsed, parsed_host = check_url(url)
    assert parsed_host == host
    assert parsed.scheme in ("http", "https")


@pytest.mark.parametrize(
    "url", ["http:///path", "http://xn--zz.example/", "http://ex%20ample.com/"]
)
def test_check_url_refuses_unusable_hosts(url: str) -> None:
    with pytest.raises((BlockedURL, BadRequest)):
        check_url(url)
