"""SSRF protection for the vault's HTTP proxy: check a URL's destination *after* DNS resolution.

:meth:`SsrfGuard.check` resolves the host itself (every address), refuses the URL if any address is
internal (loopback, RFC 1918, link-local and cloud metadata, CGNAT, unique-local, multicast,
reserved, IPv4-mapped or -compatible IPv6, 6to4/Teredo/NAT64 embedding an internal IPv4...), and
returns a :class:`Target` holding the checked addresses. The proxy then connects to exactly those
addresses (:class:`PinnedResolver`), so a DNS answer that changes between the check and the connect
(DNS rebinding) cannot redirect the call.

Numeric hosts are read the way browsers and ``inet_aton`` read them (``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1`` are all 127.0.0.1) and are never sent to DNS.

The only way through is an explicit :class:`SsrfExemption` (for tests that talk to a server on
127.0.0.1); the default is none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from legion.contracts.errors import ConfigError, LegionError, Unavailable

__all__ = [
    "ALLOWED_SCHEMES",
    "IPAddress",
    "InvalidTarget",
    "PinnedResolver",
    "Resolve",
    "SsrfExemption",
    "SsrfGuard",
    "SsrfRefused",
    "Target",
    "address_problem",
    "parse_numeric_host",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``(host, port) -> addresses``: how the guard resolves a host name (injectable for tests)."""

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})


class SsrfRefused(LegionError):
    """The destination is internal (or its scheme is not http/https). Nothing was sent."""

    def __init__(self, *, host: str, reason: str, address: str | None = None) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        where = f"{host!r}" if address is None or address == host else f"{host!r} (resolves to {address})"
        super().__init__(
            f"refused to connect to {where}: {reason}; the vault only calls public http(s) addresses (SSRF protection)"
        )


class InvalidTarget(LegionError):
    """The URL cannot be used as a destination (no host, malformed host or numeric address)."""


_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives at 169.254.169.254)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
    ("::/96", "an IPv4-compatible IPv6 address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001::/23", "an IETF protocol assignment"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_BLOCKED: Final = tuple((ipaddress.ip_network(net), reason) for table in (_V4, _V6) for net, reason in table)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be called (a phrase such as 'a loopback address'), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        decided, problem = _ipv6_special(ip)
        if decided:
            return problem
    reason = next((r for net, r in _BLOCKED if ip.version == net.version and ip in net), None)
    if reason is None and ip.is_multicast:
        reason = "a multicast address"
    if reason is None and (not ip.is_global or ip.is_reserved or ip.is_private or ip.is_loopback or ip.is_link_local):
        reason = "not a globally routable address"
    return reason


def _ipv6_special(ip: ipaddress.IPv6Address) -> tuple[bool, str | None]:
    """(decided, problem) for zone ids and IPv6 forms that embed an IPv4 address."""
    if ip.scope_id:
        return True, "an IPv6 address with a zone id"
    if ip.ipv4_mapped is not None:
        return True, f"an IPv4-mapped IPv6 address (of {ip.ipv4_mapped})"
    if ip in _NAT64:  # 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway: judge a.b.c.d
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        problem = address_problem(inner)
        return True, (f"a NAT64 address embedding {inner}, {problem}" if problem else None)
    if ip.sixtofour is not None and (problem := address_problem(ip.sixtofour)):
        return True, f"a 6to4 address embedding {ip.sixtofour}, {problem}"
    if ip.teredo is not None:
        server, client = ip.teredo
        return True, f"a Teredo tunnel address (server {server}, client {client})"
    return False, None


_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")
_NUMERIC_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def parse_numeric_host(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` as an IPv4 address in any legacy form, or None if it is a name.

    Follows the WHATWG URL rules: a host whose last label is a number is an IPv4 address written
    in one to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes. A host that ends in a number but is not a valid address raises.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or _NUMERIC_PART.fullmatch(parts[-1]) is None:
        return None
    if len(parts) > 4:
        raise InvalidTarget(f"host {host!r} ends in a number but has more than four parts; it is not an address")
    numbers: list[int] = []
    for part in parts:
        if _NUMERIC_PART.fullmatch(part) is None:
            raise InvalidTarget(f"host {host!r} ends in a number but {part!r} is not a number; it is not an address")
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c not in "01234567" for c in part):
                raise InvalidTarget(f"host {host!r}: {part!r} starts with 0 (octal) but has digits 8 or 9")
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part, 10))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise InvalidTarget(f"host {host!r} is a numeric address with a part out of range")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (A and AAAA), in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unavailable(f"cannot resolve host {host!r}: {exc}") from None
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]))
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:  # a zone id
            ip = ipaddress.IPv6Address(f"{ip}%{sockaddr[3]}")
        found.append(ip)
    return found


@dataclass(frozen=True, slots=True)
class SsrfExemption:
    """Let calls reach ``network`` (on ``port`` only, if given) although it is internal. For tests only."""

    network: str
    port: int | None = None

    def covers(self, ip: IPAddress, port: int) -> bool:
        net = ipaddress.ip_network(self.network, strict=False)
        return ip.version == net.version and ip in net and (self.port is None or self.port == port)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to ``addresses`` only (``literal``: the host is an IP address)."""

    url: URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    literal: bool


class SsrfGuard:
    """Checks a URL's scheme and every address its host resolves to; see the module docstring."""

    def __init__(self, *, exemptions: Iterable[SsrfExemption] = (), resolve: Resolve | None = None) -> None:
        self.exemptions = tuple(exemptions)
        for exemption in self.exemptions:
            try:
                ipaddress.ip_network(exemption.network, strict=False)
            except ValueError as exc:
                raise ConfigError(f"SSRF exemption {exemption.network!r} is not a network: {exc}") from None
        self._resolve = resolve or system_resolve

    async def check(self, url: URL) -> Target:
        """The checked destination of ``url``; raises SsrfRefused, InvalidTarget or Unavailable (DNS)."""
        scheme = url.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise SsrfRefused(host=url.raw_host or "", reason=f"the scheme {scheme or '(none)'!r} is not http or https")
        host = url.raw_host
        if not host:
            raise InvalidTarget(f"URL {url.human_repr()!r} has no host; give an absolute http(s) URL")
        port = url.port or (443 if scheme == "https" else 80)
        literal = _literal_address(host)
        if literal is not None:
            if not _canonical(host, literal):
                problem = self._problem(literal, port)
                if problem:
                    raise SsrfRefused(host=host, address=str(literal), reason=problem)
                raise InvalidTarget(f"host {host!r} is a non-standard way to write {literal}; write {literal}")
            self._refuse_if_internal(host, literal, port)
            return Target(url=url, host=host, port=port, addresses=(literal,), literal=True)
        name = host.lower().rstrip(".")
        if _HOSTNAME.fullmatch(host.lower()) is None:
            raise InvalidTarget(f"host {host!r} is not a valid host name")
        if name == "localhost" or name.endswith(".localhost"):
            raise SsrfRefused(host=host, reason="'localhost' names the vault's own machine")
        addresses = tuple(dict.fromkeys(await self._resolve(name, port)))
        if not addresses:
            raise Unavailable(f"host {host!r} resolves to no address")
        for ip in addresses:  # every address: a client may use any of them
            self._refuse_if_internal(host, ip, port)
        return Target(url=url, host=host, port=port, addresses=addresses, literal=False)

    def _problem(self, ip: IPAddress, port: int) -> str | None:
        problem = address_problem(ip)
        if problem and any(e.covers(ip, port) for e in self.exemptions):
            return None
        return problem

    def _refuse_if_internal(self, host: str, ip: IPAddress, port: int) -> None:
        problem = self._problem(ip, port)
        if problem:
            raise SsrfRefused(host=host, address=str(ip), reason=problem)


def _literal_address(host: str) -> IPAddress | None:
    if ":" in host:  # yarl gives IPv6 literals without brackets
        try:
            return ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            raise InvalidTarget(f"host {host!r} is not a valid IPv6 address") from None
    return parse_numeric_host(host)


def _canonical(host: str, ip: IPAddress) -> bool:
    """True if ``host`` is how aiohttp will read ``ip`` (dotted quad; any IPv6 literal)."""
    return ip.version == 6 or host == str(ip)


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with addresses a :class:`SsrfGuard` checked.

    It never asks DNS: a host that was not pinned fails to resolve, so aiohttp can connect only to
    checked addresses. IP-literal hosts never reach a resolver (aiohttp connects to them directly).
    """

    def __init__(self) -> None:
        self._pins: dict[str, tuple[IPAddress, ...]] = {}

    def pin(self, target: Target) -> None:
        self._pins[_pin_key(target.host)] = target.addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get(_pin_key(host))
        if not addresses:
            raise OSError(f"host {host!r} was not checked by the SSRF guard; refusing to resolve it")
        results: list[ResolveResult] = []
        for ip in addresses:
            ip_family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, ip_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=ip_family,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError(f"host {host!r} has no checked address of family {family!r}")
        return results

    async def close(self) -> None:
        self._pins.clear()


def _pin_key(host: str) -> str:
    return host.lower().rstrip(".")
