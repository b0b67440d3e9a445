"""Where webhooks may connect: only to public addresses (SSRF), checked when a webhook is saved
and again at connect time, against the address actually connected to (DNS rebinding).

`GuardedBackend` is an httpcore network backend: its `connect_tcp` resolves the host, refuses
the connection if any address is not public, and connects to a checked address. TLS is started
by httpcore afterwards with the URL's host name, so certificates are still verified against it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
ALLOW_HINT = "set LIVECODE_WEBHOOK_ALLOW_PRIVATE=true to allow it"


class BlockedAddress(httpcore.ConnectError):
    """The target resolves to an address webhooks may not reach."""


def blocked_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not connect to `ip` (None: a public address). An IPv4-mapped or NAT64
    (64:ff9b::/96) address reaches the IPv4 address it embeds, and is judged as that; a 6to4
    address is judged by its IPv4 address too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return blocked_reason(ip.ipv4_mapped)
        if ip in _NAT64:
            return blocked_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (why := blocked_reason(ip.sixtofour)):
            return why
        if ip.is_site_local:
            return "site-local"
    for why, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    ):
        if hit:
            return why
    return None


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int, wait_s: float | None) -> list[IPAddress]:
    """Every address of `host` (an IP literal is itself), in the resolver's order."""
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
        wait_s,
    )
    found: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


def first_blocked(host: str, addresses: Iterable[IPAddress]) -> str | None:
    """A message for the first address of `host` that is not public, else None."""
    for ip in addresses:
        why = blocked_reason(ip)
        if why:
            shown = host if ip_literal(host) else f"{host} resolves to {ip}, which"
            return f"{shown} is a {why} address; {ALLOW_HINT}"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses, unless `allow_private`. A host with any non-public
    address is refused as a whole (a resolver answering with a public and a private address
    must not get a second chance)."""

    def __init__(
        self, *, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port, timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not self.allow_private and (why := first_blocked(host, addresses)):
            raise BlockedAddress(f"refused: {why}")
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for ip in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
