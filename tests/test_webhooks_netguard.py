"""Where webhooks may connect: the address rules, and the connect-time guard (it connects to
the address it checked, and TLS still verifies the URL's host name)."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpcore
import pytest

from app.webhooks.formats import Message, render
from app.webhooks.netguard import GuardedBackend, blocked_reason
from app.webhooks.sender import Sender
from tests.webhook_helpers import settings
from tests.webhook_receiver import receiving

BLOCKED = {
    "127.0.0.1": "loopback", "127.255.0.9": "loopback", "::1": "loopback",
    "::ffff:127.0.0.1": "loopback", "::ffff:10.0.0.1": "private", "10.0.0.1": "private",
    "172.31.255.1": "private", "192.168.0.1": "private", "169.254.169.254": "link-local",
    "fe80::1": "link-local", "fc00::1": "private", "fd12::1": "private",
    "224.0.0.251": "multicast", "ff02::1": "multicast", "0.0.0.0": "unspecified",
    "::": "unspecified", "240.0.0.1": "private", "100.64.0.1": "non-global",
    "2002:7f00:1::": "loopback", "2002:a00:1::": "private", "64:ff9b::7f00:1": "loopback",
    "fec0::1": "site-local", "198.18.0.1": "private", "192.0.2.1": "private",
    "2001:db8::1": "private",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "203.0.114.1", "2001:4860:4860::8888", "2606:4700::1111",
          "2002:808:808::", "64:ff9b::808:808", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), BLOCKED.items())
def test_non_public_addresses_are_blocked(address: str, why: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


class Recording(httpcore.AsyncNetworkBackend):
    """A real backend that notes the host each connection was opened to."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.hosts: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await self.inner.connect_tcp(host, port, timeout=timeout,
                                            local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def test_the_guard_connects_to_the_address_it_checked() -> None:
    with receiving() as rx:
        recording = Recording()
        guard = GuardedBackend(allow_private=True, inner=recording)
        async with httpcore.AsyncConnectionPool(network_backend=guard) as pool:
            response = await pool.request("POST", rx.url(host="localhost"), content=b"{}")
        assert response.status == 200 and rx.count() == 1
        assert recording.hosts == ["127.0.0.1"]  # resolved and checked, not resolved again
        assert rx.requests[0].headers["host"] == f"localhost:{rx.port}"
        refused = GuardedBackend(allow_private=False, inner=recording)
        async with httpcore.AsyncConnectionPool(network_backend=refused) as pool:
            with pytest.raises(httpcore.ConnectError, match="loopback"):
                await pool.request("POST", rx.url(host="localhost"), content=b"{}")
        assert recording.hosts == ["127.0.0.1"] and rx.count() == 1  # no connection at all


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a certificate for the name `localhost` only (no IP address)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=livecode test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": d / "ca.pem", "cert": d / "leaf.pem", "key": d / "leaf.key"}


async def test_tls_verifies_the_url_host_while_connecting_to_the_checked_ip(
        redis_url: str, tls_files: dict[str, Path]) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files["cert"], tls_files["key"])
    trust = ssl.create_default_context(cafile=str(tls_files["ca"]))
    message = Message("ev_tls", "pool.low", datetime.now(UTC), {}, "hello")
    with receiving(tls=server) as rx:
        sender = Sender(settings(redis_url), verify=trust)
        try:
            good = await sender.send(render("slack", rx.url(host="localhost", scheme="https"),
                                            None, message, now=0))
            bad = await sender.send(render("slack", rx.url(host="127.0.0.1", scheme="https"),
                                           None, message, now=0))
        finally:
            await sender.aclose()
    assert good.attempt.ok, good.attempt
    assert not bad.attempt.ok and bad.attempt.status is None
    assert bad.attempt.error is not None and "certificate" in bad.attempt.error.lower()
    assert "127.0.0.1" in bad.attempt.error  # the name checked was the URL's, an IP here
    assert rx.count() == 1
