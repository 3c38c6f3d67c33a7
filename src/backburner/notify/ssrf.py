"""The guard on outbound HTTP to URLs users give us (webhooks, Slack, Teams).

A host is first normalised as the network will see it (`normalised_host`): IDNA/UTS-46
mapping turns fullwidth digits, ideographic dots and circled digits into ASCII, and an IPv4
address in any form the C library accepts (decimal `2130706433`, octal `0177.0.0.1`, hex
`0x7f.0.0.1`, short `127.1`) is written canonically; a host that does not normalise is
refused. Every check below is made on that form, and requests go to the URL rebuilt with
it (`safe_url`), so the HTTP client never reads the host differently from the guard.

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
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import idna
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


_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")


def normalised_host(raw: str) -> str:
    """The host as the network will see it: an IP address written canonically, or an
    ASCII (IDNA/UTS-46) name in lower case without a trailing dot. UnsafeTarget if it
    does not normalise."""
    bare = raw.strip("[]")
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        pass
    if bare.isascii():
        name = bare.lower().rstrip(".")
    else:
        # What an HTTP client makes of it before connecting; one that does not map is no
        # host anyone can mean.
        try:
            mapped = idna.encode(bare.rstrip(".\u3002\uff0e\uff61"), uts46=True)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UnsafeTarget(
                f"the host {raw!r} is not a valid internationalised name (IDNA/UTS-46)"
            ) from None
        name = mapped.decode("ascii").lower()
    if not _HOST_NAME.fullmatch(name):
        raise UnsafeTarget(f"the host {raw!r} has characters no host name has")
    if _NUMERIC_HOST.fullmatch(name):
        # Forms like 2130706433, 0177.0.0.1, 0x7f.1 are addresses to the C library.
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(name)))
        except OSError:
            pass
    return name


def check_scheme(url: str, allowed: Allowed) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL we may call, as far as its text tells; the host
    normalised."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeTarget(f"the URL does not parse: {error}") from None
    if parts.scheme not in ("https", "http"):
        raise UnsafeTarget(f"{parts.scheme or 'no'} scheme; only https URLs are called")
    if parts.scheme == "http" and not allowed.allow_http:
        raise UnsafeTarget("plain http is refused (BACKBURNER_WEBHOOK_ALLOW_HTTP=1 allows it)")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are refused")
    port = port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, normalised_host(parts.hostname), port


def check_url(url: str, allowed: Allowed) -> tuple[str, int]:
    """(host, port) of a URL whose text may be called: scheme, credentials, and an address
    written in it (in any form). Names are checked when resolved (`checked_addresses`)."""
    _scheme, host, port = check_scheme(url, allowed)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host, port
    if not is_public(literal) and not allowed.lets_through(host, literal):
        raise UnsafeTarget(f"{literal} is not a public address")
    return host, port


def safe_url(url: str, allowed: Allowed) -> str:
    """The URL to request: checked as `check_url` checks it, and rebuilt with the
    normalised host, so the HTTP client connects to what the guard checked."""
    scheme, _, _ = check_scheme(url, allowed)
    host, port = check_url(url, allowed)
    parts = urlsplit(url)
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    netloc = shown if parts.port in (None, default) else f"{shown}:{port}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


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
