"""The guard on outbound HTTP to URLs users give us (webhooks, Slack, Teams).

Only https (http when the operator allows it); the host is resolved once and every address
must be public (not private, loopback, link-local — which includes cloud metadata at
169.254.169.254 —, multicast, reserved or unspecified) unless the host or the address is
allow-listed (`BACKBURNER_WEBHOOK_ALLOWED_HOSTS`). The connection is made to the checked
address (aiohttp keeps the Host header and TLS server name), so a DNS answer that changes
between check and connect (rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from backburner.errors import Unresolvable, UnsafeTarget

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def check_url(url: str, allowed: Allowed) -> tuple[str, int]:
    """(host, port) of a URL whose text may be called: scheme, credentials, and an address
    written in it. Names are checked when resolved (`checked_addresses`)."""
    _scheme, host, port = check_scheme(url, allowed)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host, port
    if not is_public(literal) and not allowed.lets_through(host, literal):
        raise UnsafeTarget(f"{literal} is not a public address")
    return host, port


async def checked_addresses(host: str, port: int, allowed: Allowed) -> list[IpAddress]:
    """Resolve `host`; every address must be public (or allow-listed), else UnsafeTarget."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Unresolvable(f"cannot resolve {host}: {error.strerror}") from None
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )
    if not addresses:
        raise Unresolvable(f"{host} has no address")
    for address in addresses:
        if not is_public(address) and not allowed.lets_through(host, address):
            raise UnsafeTarget(
                f"{host} resolves to {address}, a non-public address "
                "(allow it with BACKBURNER_WEBHOOK_ALLOWED_HOSTS)"
            )
    return addresses


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, checking what it resolves: the connection is made to the very
    addresses that were checked, so DNS rebinding cannot redirect it. (aiohttp does not
    resolve IP literals; `check_url` covers those before the request.)"""

    def __init__(self, allowed: Allowed) -> None:
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in await checked_addresses(host, port, self._allowed)
        ]

    async def close(self) -> None:
        return None
