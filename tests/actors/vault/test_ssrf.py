"""The SSRF guard: every address a host resolves to is checked before any connection (no traffic here)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from yarl import URL

from legion.actors.vault.ssrf import (
    InvalidTarget,
    IPAddress,
    PinnedResolver,
    SsrfExemption,
    SsrfGuard,
    SsrfRefused,
    address_problem,
    parse_numeric_host,
    system_resolve,
)
from legion.contracts.errors import ConfigError, Unavailable


class FakeDns:
    """A resolver that answers from a table and counts lookups; it never touches the network."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.table:
            raise Unavailable(f"cannot resolve host {host!r}")
        return [ipaddress.ip_address(a) for a in self.table[host]]


def no_dns() -> FakeDns:
    return FakeDns({})


INTERNAL = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.100.100.200",
    "192.0.0.192",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::8.8.8.8",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_have_a_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_have_no_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_the_problem_names_the_kind_of_address() -> None:
    assert "loopback" in (address_problem(ipaddress.ip_address("127.0.0.1")) or "")
    assert "metadata" in (address_problem(ipaddress.ip_address("169.254.169.254")) or "")
    assert "carrier-grade NAT" in (address_problem(ipaddress.ip_address("100.64.0.1")) or "")
    assert "NAT64 address embedding 127.0.0.1" in (address_problem(ipaddress.ip_address("64:ff9b::7f00:1")) or "")
    assert "6to4 address embedding 10.0.0.1" in (address_problem(ipaddress.ip_address("2002:a00:1::")) or "")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_hosts_are_read_like_inet_aton(host: str, address: str) -> None:
    assert parse_numeric_host(host) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("host", ["example.com", "localhost", "1e100", "a.b-c.d"])
def test_names_are_not_numeric_hosts(host: str) -> None:
    assert parse_numeric_host(host) is None


@pytest.mark.parametrize("host", ["256.0.0.1", "1.2.3.4.5", "09.0.0.1", "example.123", "1.16777216"])
def test_malformed_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_numeric_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4222/",
        "http://localhost:4222/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00:ec2::254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0/",
        "https://100.100.100.200/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:4222/_INFO",
        "ftp://8.8.8.8/",
    ],
)
async def test_internal_destinations_are_refused_without_dns(url: str) -> None:
    dns = no_dns()
    with pytest.raises(SsrfRefused):
        await SsrfGuard(resolve=dns).check(URL(url))
    assert dns.lookups == []


async def test_a_name_that_resolves_to_a_private_address_is_refused_after_resolution() -> None:
    dns = FakeDns({"intranet.example.com": ["10.0.0.7"]})
    with pytest.raises(SsrfRefused, match=r"intranet\.example\.com.*resolves to 10\.0\.0\.7.*private"):
        await SsrfGuard(resolve=dns).check(URL("https://intranet.example.com/"))
    assert dns.lookups == ["intranet.example.com"]


async def test_one_internal_address_among_public_ones_is_enough_to_refuse() -> None:
    dns = FakeDns({"mixed.example.com": ["93.184.215.14", "2606:4700::1", "169.254.169.254"]})
    with pytest.raises(SsrfRefused, match=r"169\.254\.169\.254"):
        await SsrfGuard(resolve=dns).check(URL("http://mixed.example.com/"))


async def test_a_name_resolving_to_loopback_through_the_system_resolver_is_refused() -> None:
    """'localhost' is resolved by the real system resolver (from /etc/hosts); the answer is judged."""
    addresses = await system_resolve("localhost", 80)
    assert ipaddress.ip_address("127.0.0.1") in addresses

    async def via_system(host: str, port: int) -> list[IPAddress]:
        return await system_resolve("localhost", port)  # any name, answered as localhost is

    with pytest.raises(SsrfRefused, match="loopback"):
        await SsrfGuard(resolve=via_system).check(URL("http://looks-public.example/"))


async def test_public_names_pass_with_every_resolved_address() -> None:
    dns = FakeDns({"api.example.com": ["93.184.215.14", "2606:4700::1111"]})
    target = await SsrfGuard(resolve=dns).check(URL("https://api.example.com/v1"))
    assert target.port == 443 and not target.literal
    assert [str(a) for a in target.addresses] == ["93.184.215.14", "2606:4700::1111"]


async def test_public_ip_literals_pass_without_dns() -> None:
    dns = no_dns()
    target = await SsrfGuard(resolve=dns).check(URL("http://8.8.8.8:8080/"))
    assert target.literal and target.addresses == (ipaddress.IPv4Address("8.8.8.8"),) and target.port == 8080
    assert dns.lookups == []


async def test_a_public_address_in_a_non_standard_form_is_invalid() -> None:
    with pytest.raises(InvalidTarget, match=r"write 8\.8\.8\.8"):
        await SsrfGuard(resolve=no_dns()).check(URL("http://134744072/"))


async def test_an_unresolvable_name_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await SsrfGuard(resolve=no_dns()).check(URL("http://nowhere.example/"))


async def test_an_exemption_opens_only_its_network_and_port() -> None:
    guard = SsrfGuard(exemptions=[SsrfExemption("127.0.0.1/32", port=8080)], resolve=no_dns())
    assert (await guard.check(URL("http://127.0.0.1:8080/"))).literal
    for url in ("http://127.0.0.1:4222/", "http://127.0.0.2:8080/", "http://[::1]:8080/", "http://localhost:8080/"):
        with pytest.raises(SsrfRefused):
            await guard.check(URL(url))


def test_an_exemption_must_name_a_network() -> None:
    with pytest.raises(ConfigError, match="not a network"):
        SsrfGuard(exemptions=[SsrfExemption("not-a-net")])


async def test_the_pinned_resolver_answers_only_checked_hosts_with_checked_addresses() -> None:
    dns = FakeDns({"api.example.com": ["93.184.215.14", "2606:4700::1111"]})
    resolver = PinnedResolver()
    resolver.pin(await SsrfGuard(resolve=dns).check(URL("https://api.example.com/")))
    both = await resolver.resolve("API.example.com.", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in both] == ["93.184.215.14", "2606:4700::1111"]
    assert all(r["port"] == 443 and r["hostname"] == "API.example.com." for r in both)
    v4 = await resolver.resolve("api.example.com", 443, socket.AF_INET)
    assert [r["host"] for r in v4] == ["93.184.215.14"]
    with pytest.raises(OSError, match="not checked"):
        await resolver.resolve("other.example.com", 443, socket.AF_UNSPEC)
