"""The guarded outbound client: which destinations the service may contact, and the one HTTP client that sends.

Customers and remote servers choose the URLs the worker fetches, so every destination is checked:
refused when any address is not globally routable (loopback, private, link-local, CGNAT, multicast,
reserved, cloud metadata, and IPv6 forms that embed such an IPv4 address), unless
`MCP_OUTBOUND_ALLOWLIST` names it. Python's `ipaddress` alone calls NAT64 (64:ff9b::/96), 6to4
(2002::/16) and some multicast addresses "global"; those are unwrapped and checked here.

`check_url` is the create-time check of a URL as written (literal IPs in any spelling, names that
always mean this machine or its network). At connect time, `guarded_client_factory` builds the one
kind of HTTP client the service sends anything with: its connections go through
`GuardedNetworkBackend`, which resolves a host once, refuses it when any address is not allowed, and
connects to an address it checked, so DNS rebinding cannot switch the destination between the check
and the connect. TLS (SNI, certificate checks) and the Host header keep the original host name,
because httpcore2 takes those from the request's origin, not from the address it connected to.

No maintained library guards the httpx2/httpcore2 connect path (the known ones wrap `requests`,
or are part of a whole framework), so the policy is the standard library's `ipaddress` plus the
unwrapping above, and the guard is httpcore2's documented network-backend hook.

The allowlist comes from the caller (`OutboundPolicy`, or the rules of one): nothing here reads settings.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import anyio
import httpcore2
import httpx2
import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")

# Names that mean "this machine" or "this network" whatever DNS says.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata"})
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
DEFAULT_PORTS = {"http": 80, "https": 443}
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


class DestinationRefused(Exception):
    """The destination is not allowed; the message is safe to show to the caller."""


class InvalidUrl(ValueError):
    """The URL is malformed; the message is safe to show to the caller."""


def is_forbidden_address(ip: IPAddress) -> bool:
    """True when `ip` is not a globally routable unicast address, including wrapped IPv4 forms."""
    if ip in METADATA_ADDRESSES or ip.is_multicast:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_forbidden_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_forbidden_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _SIX_TO_FOUR and ip.sixtofour is not None:
            return is_forbidden_address(ip.sixtofour)
        if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL or ip in _TEREDO:
            return True  # deprecated or tunnelled forms: no legitimate MCP server lives there
    elif ip in _CGNAT:
        return True
    return not ip.is_global


@dataclass(frozen=True)
class AllowRule:
    host: str | None  # a lower-case name, or None for a network rule
    network: IPNetwork | None
    port: int | None  # None: any port

    def allows(self, *, host: str, port: int, ip: IPAddress | None = None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host
        assert self.network is not None
        candidate = ip if ip is not None else _literal_ip(host)
        return candidate is not None and candidate.version == self.network.version and candidate in self.network


def parse_allowlist(value: str) -> list[AllowRule]:
    """`host[:port]`, `CIDR[:port]`, `IP[:port]` or `[IPv6][:port]` entries, comma separated."""
    rules: list[AllowRule] = []
    for raw_entry in value.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        port: int | None = None
        target = entry
        if entry.startswith("["):
            close = entry.find("]")
            if close == -1:
                raise ValueError(f"Bad MCP_OUTBOUND_ALLOWLIST entry: {entry!r}")
            target, rest = entry[1:close], entry[close + 1 :]
            if rest:
                port = _parse_port(rest.removeprefix(":"), entry)
        elif entry.count(":") == 1:
            target, port_text = entry.split(":")
            port = _parse_port(port_text, entry)
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            rules.append(AllowRule(host=_normalize_host(target), network=None, port=port))
        else:
            rules.append(AllowRule(host=None, network=network, port=port))
    return rules


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"Bad port in MCP_OUTBOUND_ALLOWLIST entry: {entry!r}")
    return int(text)


def is_allowlisted(*, host: str, port: int, rules: Iterable[AllowRule], ip: IPAddress | None = None) -> bool:
    return any(rule.allows(host=host, port=port, ip=ip) for rule in rules)


def _normalize_host(host: str) -> str:
    """Lower-case ASCII form of a host name (NFKC and UTS #46 mapped), without a trailing dot."""
    host = unicodedata.normalize("NFKC", host).rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise InvalidUrl("the host name is not a valid internationalized domain name") from exc


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _loose_ipv4(host: str) -> int | None:
    """The WHATWG URL parser's reading of a numeric host (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`).

    Returns None when the host is not numeric. Browsers and many HTTP stacks accept these spellings.
    """
    labels = host.split(".")
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if len(labels) > 4:
        raise InvalidUrl("the host is not a valid IPv4 address")
    numbers: list[int] = []
    for label in labels:
        if not _NUMERIC_LABEL.match(label):
            raise InvalidUrl("the host is not a valid IPv4 address")
        if label.lower().startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise InvalidUrl("the host is not a valid IPv4 address")
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise InvalidUrl("the host is not a valid IPv4 address")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return value


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str  # normalized: lower-case ASCII, no brackets, no trailing dot
    port: int
    ip: IPAddress | None  # set when the host is an IP literal


def check_url(raw: str, *, rules: Iterable[AllowRule]) -> CheckedUrl:
    """Validate a URL as written and apply the address policy to its host, `rules` exempting what they allow.

    Raises InvalidUrl for a malformed URL and DestinationRefused for a destination the policy refuses.
    """
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in raw):
        raise InvalidUrl("must not contain whitespace or control characters")
    if "\\" in raw:
        raise InvalidUrl("must not contain backslashes")
    try:
        parts: SplitResult = urlsplit(raw)
    except ValueError as exc:
        raise InvalidUrl("is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise InvalidUrl("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise InvalidUrl("must not contain credentials (user@host)")
    if "#" in raw:
        raise InvalidUrl("must not contain a fragment (#...)")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise InvalidUrl("has an invalid port") from exc
    hostname = parts.hostname or ""
    if not hostname:
        raise InvalidUrl("must include a host")
    bracketed = parts.netloc.startswith("[")
    if bracketed:
        if "%" in hostname:
            raise InvalidUrl("must not use an IPv6 zone identifier")
        ip: IPAddress | None = _literal_ip(hostname)
        if not isinstance(ip, ipaddress.IPv6Address):
            raise InvalidUrl("has an invalid IPv6 address")
        host = str(ip)
    else:
        host = _normalize_host(hostname)
        if not host or any(ch in host for ch in "[]%"):
            raise InvalidUrl("must include a valid host")
        loose = _loose_ipv4(host)
        ip = None
        if loose is not None:
            ip = ipaddress.IPv4Address(loose)
            if str(ip) != host:
                raise DestinationRefused(
                    "the destination is not allowed (IP addresses must be written in dotted-decimal form, "
                    "for example 203.0.113.7)"
                )
        elif _literal_ip(host) is not None:  # a bare IPv6 literal would not parse as a URL host
            raise InvalidUrl("IPv6 addresses must be written in brackets")
    rule_list = list(rules)
    if not is_allowlisted(host=host, port=port, ip=ip, rules=rule_list):
        if ip is not None and is_forbidden_address(ip):
            raise DestinationRefused("the destination is not allowed (a loopback, private or internal address)")
        if ip is None and is_local_name(host):
            raise DestinationRefused("the destination is not allowed (a local or internal host name)")
    return CheckedUrl(url=raw, scheme=scheme, host=host, port=port, ip=ip)


def is_local_name(host: str) -> bool:
    return host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES)


# --- Connect-time guard ----------------------------------------------------------------------------

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
REFUSED_ADDRESS = "The server's address resolves to a private or internal network address, which is not allowed."
REFUSED_NAME = "The server's host name refers to a local or internal host, which is not allowed."


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations a connection may reach: the address policy plus the allowlist's exemptions."""

    rules: tuple[AllowRule, ...] = ()
    # None: the module's `resolve_host`, looked up at call time (tests replace it to fake DNS answers).
    resolver: Resolver | None = field(default=None, compare=False)

    @classmethod
    def from_allowlist(cls, allowlist: str) -> OutboundPolicy:
        """The policy with `host[:port]` / `CIDR[:port]` exemptions, as MCP_OUTBOUND_ALLOWLIST spells them."""
        return cls(rules=tuple(parse_allowlist(allowlist)))

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve `host` once and return its addresses if every one is allowed; raise DestinationRefused if not."""
        name = host.strip("[]").lower().rstrip(".")
        literal = _literal_ip(name)
        if literal is None:
            try:
                loose = _loose_ipv4(name)  # libc would read `2130706433` or `0x7f.1` as an address, too
            except InvalidUrl:
                raise DestinationRefused(REFUSED_ADDRESS) from None
            literal = ipaddress.IPv4Address(loose) if loose is not None else None
        if literal is None and is_local_name(name) and not is_allowlisted(host=name, port=port, rules=self.rules):
            raise DestinationRefused(REFUSED_NAME)
        if literal is not None:
            addresses = [literal]
        else:
            resolver = self.resolver or resolve_host
            addresses = await resolver(name, port)
        if not addresses:
            raise httpcore2.ConnectError(f"Could not resolve {name}.")
        for ip in addresses:
            if is_forbidden_address(ip) and not is_allowlisted(host=name, port=port, ip=ip, rules=self.rules):
                raise DestinationRefused(REFUSED_ADDRESS)
        return addresses


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's network backend, except that it connects only to addresses the policy checked."""

    def __init__(self, policy: OutboundPolicy, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._policy.checked_addresses(host, port)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"Timed out resolving {host}.") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(f"Could not resolve {host}.") from exc
        error: Exception | None = None
        for ip in addresses:  # the checked addresses, in the resolver's order; never a second lookup
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise DestinationRefused("Unix-socket destinations are not allowed.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~15 ms per client; an SSLContext is safe to share across clients and loops.
    return httpx2.create_ssl_context()


class GuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__(verify=shared_ssl_context(), trust_env=False)
        # httpx2's transport takes no network backend, so its connection pool is replaced by one that
        # connects through the guard (same settings as httpx2's defaults otherwise).
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=shared_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedNetworkBackend(policy),
        )


def guarded_client_factory(policy: OutboundPolicy) -> Callable[..., httpx2.AsyncClient]:
    """The factory for every outbound HTTP client: guarded connects, no redirects, no proxies from the environment.

    Called as ``factory(headers=..., timeout=..., auth=...)``, like the MCP SDK's ``McpHttpClientFactory``.
    """

    def factory(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout if timeout is not None else httpx2.Timeout(10.0),
            auth=auth,
            follow_redirects=False,
            trust_env=False,
            transport=GuardedTransport(policy),
        )

    return factory


def guarded_client(policy: OutboundPolicy, *, connect_seconds: float, read_seconds: float) -> httpx2.AsyncClient:
    """One guarded client with the given timeouts (for calls outside the MCP transports, e.g. OAuth)."""
    return guarded_client_factory(policy)(timeout=httpx2.Timeout(read_seconds, connect=connect_seconds))
