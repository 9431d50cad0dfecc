"""Where the registry may connect for upstream servers, and the connection that enforces it.

A host name on the allowlist says nothing about where it points: ``mcp.example.com`` (or anything
under an allowlisted ``*.example.com``) can resolve to 127.0.0.1, 169.254.169.254 or a private
address, and DNS can change its answer between a check and the connection. So the target's name
is resolved once, every address is checked, and the connection goes to the checked address
(``PinnedTransport``), while the Host header and TLS SNI/certificate check keep the name.

Addresses that are not public (loopback, link-local and the metadata services in it, private,
CGNAT, multicast, unspecified, reserved; IPv4-mapped and NAT64 IPv6 by their IPv4 address) are
refused unless an IP or CIDR entry of the allowlist contains them: reaching an internal service
must be written down as such. Ports are allowed by ``UPSTREAM_ALLOWED_PORTS`` only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the name resolves to, as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressRefused(Exception):
    """The policy refuses the target; the message names the rule, never a connection outcome."""


class ResponseTooLarge(Exception):
    """An upstream response passed the byte cap while it was being read."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (getaddrinfo), addresses deduplicated in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast; IPv4 embedded in IPv6 (mapped, NAT64) is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def _port_range(entry: str) -> tuple[int, int]:
    low, _, high = entry.strip().partition("-")
    if not (low.isdigit() and (high or low).isdigit()):
        raise ValueError(f"invalid port or range {entry!r}")
    first, last = int(low), int(high or low)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"invalid port or range {entry!r}")
    return first, last


@dataclass(frozen=True)
class EgressPolicy:
    """``UPSTREAM_ALLOWED_HOSTS`` (names, ``*.suffix``, IPs, CIDRs) and ``UPSTREAM_ALLOWED_PORTS``."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]
    ports: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, hosts: Sequence[str], ports: Sequence[str]) -> EgressPolicy:
        """Raises ``ValueError`` naming the first entry that is none of the accepted forms."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in hosts:
            entry = raw.strip().lower().rstrip(".").strip("[]")
            if not entry:
                continue
            if entry.startswith("*."):
                suffixes.append(entry[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=True))
            except ValueError:
                if "/" in entry or ":" in entry or "*" in entry:
                    raise ValueError(f"invalid UPSTREAM_ALLOWED_HOSTS entry {raw!r}") from None
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks), tuple(_port_range(p) for p in ports if p))

    @property
    def empty(self) -> bool:
        return not (self.names or self.suffixes or self.networks)

    def listed(self, address: IPAddress) -> bool:
        """Whether an IP or CIDR entry names ``address`` explicitly."""
        return any(address.version == net.version and address in net for net in self.networks)

    def allows_name(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) and len(host) > len(s) for s in self.suffixes)

    def allows_port(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.ports)


@dataclass(frozen=True)
class Target:
    """A checked upstream origin: the name from the URL and the address to connect to."""

    scheme: str
    host: str
    port: int
    address: str
    loopback: bool


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def split_origin(url: str) -> tuple[str, str, int]:
    """(scheme, lower-case host, port) of an http(s) URL; ``ValueError`` if it has none."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise ValueError("an http:// or https:// URL with a host is required")
    return parts.scheme, host, port


def check_origin(url: str, policy: EgressPolicy) -> tuple[str, str, int]:
    """The URL's origin if its host and port are allowed (no DNS yet: names off the list are never resolved)."""
    scheme, host, port = split_origin(url)
    literal = _literal(host)
    if literal is not None:
        if not policy.listed(literal):
            raise EgressRefused(f"the address {host} is not on UPSTREAM_ALLOWED_HOSTS")
    elif not policy.allows_name(host):
        raise EgressRefused(f"the host {host} is not on UPSTREAM_ALLOWED_HOSTS")
    if not policy.allows_port(port):
        raise EgressRefused(f"port {port} is not on UPSTREAM_ALLOWED_PORTS")
    return scheme, host, port


async def resolve_target(url: str, policy: EgressPolicy, resolver: Resolver) -> Target:
    """Check the origin, resolve it, and check every address; the first one is the one to use."""
    scheme, host, port = check_origin(url, policy)
    try:
        found = [host] if _literal(host) else await resolver(host, port)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    except (OSError, ValueError) as exc:
        raise EgressRefused(f"the host {host} could not be resolved") from exc
    if not addresses:
        raise EgressRefused(f"the host {host} could not be resolved")
    for address in addresses:
        if not is_public(address) and not policy.listed(address):
            # Which address is deliberately not said: read-only callers see this message.
            raise EgressRefused(
                f"the host {host} resolves to a non-public address that UPSTREAM_ALLOWED_HOSTS does not list"
            )
    return Target(scheme, host, port, str(addresses[0]), all(a.is_loopback for a in addresses))


class CappedStream(httpx2.AsyncByteStream):
    """A response body that raises ``ResponseTooLarge`` as soon as more than ``cap`` bytes arrived."""

    def __init__(self, inner: httpx2.AsyncByteStream, cap: int) -> None:
        self.inner = inner
        self.cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self.inner:
            received += len(chunk)
            if received > self.cap:
                raise ResponseTooLarge(f"the upstream response passed {self.cap} bytes; reading stopped")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends requests for ``target``'s origin to its checked address, and caps every response.

    The request keeps its Host header, and TLS its SNI name and certificate check, so the upstream
    sees the name it was registered under. Compressed responses are refused: the cap counts the
    bytes read, and a small gzip body could expand far past it.
    """

    def __init__(self, target: Target, max_response_bytes: int) -> None:
        self.target = target
        self.cap = max_response_bytes
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False, retries=0)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        origin = (url.scheme, url.host.rstrip(".").lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0))
        if origin != (self.target.scheme, self.target.host.lower(), self.target.port):
            raise EgressRefused("a request left the upstream server's origin")
        request.url = url.copy_with(host=self.target.address)
        request.headers["Accept-Encoding"] = "identity"
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": self.target.host}
        response = await self.inner.handle_async_request(request)
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            await response.aclose()
            raise EgressRefused("the upstream sent a compressed response (only identity is accepted)")
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = CappedStream(response.stream, self.cap)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
