"""The guard on outbound HTTP to URLs users give us (webhooks, Slack, Teams).

Only https (http when the operator allows it); the host is resolved once and every address
must be public (not private, loopback, link-local — which includes cloud metadata at
169.254.169.254 —, multicast, reserved or unspecified) unless the host or the address is
allow-listed (`BACKBURNER_WEBHOOK_ALLOWED_HOSTS`). The request then goes to the checked
address (with the original Host header and TLS server name), so a DNS answer that changes
between check and connect (rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeTarget(Exception):
    """The URL may not be called."""


class Unresolvable(OSError):
    """The host does not resolve now (it may later: a delivery retries)."""


@dataclass(frozen=True)
class Allowed:
    hosts: frozenset[str]
    networks: tuple[IpNetwork, ...]
    allow_http: bool

    @classmethod
    def parse(cls, entries: Sequence[str], *, allow_http: bool) -> Allowed:
        hosts: set[str] = set()
        networks: list[IpNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), allow_http)

    def lets_through(self, host: str, address: IpAddress) -> bool:
        return host in self.hosts or any(address in network for network in self.networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to `pinned_url`, sending `host` as Host and TLS name."""

    url: str
    pinned_url: str
    host: str
    address: str


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def check_scheme(url: str, allowed: Allowed) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL we may call, as far as its text tells."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise UnsafeTarget(f"{parts.scheme or 'no'} scheme; only https URLs are called")
    if parts.scheme == "http" and not allowed.allow_http:
        raise UnsafeTarget("plain http is refused (BACKBURNER_WEBHOOK_ALLOW_HTTP=1 allows it)")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are refused")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname.lower().rstrip("."), port


async def resolve_target(url: str, allowed: Allowed) -> Target:
    """Resolve and check `url`; raises UnsafeTarget when it may not be called."""
    _scheme, host, port = check_scheme(url, allowed)
    try:
        literal: IpAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise Unresolvable(f"cannot resolve {host}: {error.strerror}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeTarget(f"{host} has no address")
    for address in addresses:
        if not is_public(address) and not allowed.lets_through(host, address):
            raise UnsafeTarget(
                f"{host} resolves to {address}, a non-public address "
                "(allow it with BACKBURNER_WEBHOOK_ALLOWED_HOSTS)"
            )
    chosen = addresses[0]
    parts = urlsplit(url)
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return Target(
        url=url, pinned_url=pinned, host=parts.netloc.rsplit("@", 1)[-1], address=str(chosen)
    )
