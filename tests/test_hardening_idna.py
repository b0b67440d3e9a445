"""Group URLs keep the host browsers open: IDNA 2008 with UTS 46 mapping (non-transitional), not
Python's IDNA 2003 codec, which stored `https://ß.de/` as `https://ss.de/`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aredis
from asgi_lifespan import LifespanManager

from app.errors import InvalidInput
from app.main import create_app
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from app.urls import check_target_url
from tests.api_helpers import assert_error, unchanged
from tests.browser import chromium

# what each host is stored as; every one checked against Chromium 156 (`new URL(...)`), and
# again by test_browsers_resolve_the_same_hosts below
STORED = [
    pytest.param("ß.de", "xn--zca.de", id="sharp-s"),  # IDNA 2003: ss.de
    pytest.param("faß.de", "xn--fa-hia.de", id="sharp-s-in-a-word"),  # IDNA 2003: fass.de
    pytest.param("ς.com", "xn--3xa.com", id="final-sigma"),  # IDNA 2003: σ, xn--4xa.com
    # ZWNJ after a Persian letter that joins: a different name from the one without it
    pytest.param("نامه\u200cای.com", "xn--mgba3gch31f060k.com", id="zwnj-persian"),
    pytest.param("क्\u200dष.com", "xn--11b2ezcw70k.com", id="zwj-after-virama"),
    pytest.param("BÜCHER.example", "xn--bcher-kva.example", id="uppercase"),
    pytest.param("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com", id="fullwidth-mapped"),
    pytest.param("Ⅷ.example", "viii.example", id="roman-numeral-mapped"),
    pytest.param("ﬁ.example", "fi.example", id="ligature-mapped"),
    pytest.param("xn--zca.de", "xn--zca.de", id="a-label"),
    pytest.param("my_app.example.com", "my_app.example.com", id="underscore"),
]

# refused with 422 (IDNA 2003 turned most of these into some other, valid, name)
REFUSED = [
    pytest.param("https://a\u200cb.com/", id="zwnj-between-latin"),  # IDNA 2003: ab.com
    pytest.param("https://a\u200db.com/", id="zwj-without-virama"),
    pytest.param("https://\u05d0a.com/", id="bidi-mixed-label"),
    pytest.param("https://\u0300a.com/", id="leading-combining-mark"),
    pytest.param("https://xn--a.com/", id="bad-punycode"),
    pytest.param("https://\u2603.net/", id="symbol"),  # browsers take it; IDNA 2008 does not
    pytest.param("https://ok.example/a\u200cb", id="joiner-outside-the-host"),
]


@pytest.mark.parametrize(("host", "expected"), STORED)
def test_hosts_are_stored_as_browsers_resolve_them(host: str, expected: str) -> None:
    assert check_target_url(f"https://{host}/path?q=1") == f"https://{expected}/path?q=1"


@pytest.mark.parametrize("url", REFUSED)
def test_invalid_hosts_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_target_url(url)


async def test_browsers_resolve_the_same_hosts() -> None:
    """The real thing: Chromium's URL parser gives the same host for every accepted case."""
    hosts = [p.values[0] for p in STORED]
    async with chromium() as browser:
        page = await browser.new_page()
        resolved = await page.evaluate(
            "hosts => hosts.map(h => new URL('https://' + h + '/').hostname)", hosts)
    for host, browser_host in zip(hosts, resolved, strict=True):
        assert check_target_url(f"https://{host}/") == f"https://{browser_host}/", host


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, aredis.Redis]]:
    app = create_app(Settings(redis_url=redis_url))
    client = aredis.Redis.from_url(redis_url)
    _, secret = await ApiKeyStore(client).create("admin")
    try:
        async with LifespanManager(app) as m:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=m.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://lc.test",
                headers={"Authorization": f"Bearer {secret}"},
            ) as http:
                r = await http.post("/api/v1/pools", json={"id": "pool-a"})
                assert r.status_code == 201, r.text
                yield http, client
    finally:
        await client.aclose()


async def test_through_the_api(admin: tuple[httpx.AsyncClient, aredis.Redis]) -> None:
    http, client = admin
    r = await http.post("/api/v1/pools/pool-a/groups", json={"id": "de", "url": "https://ß.de/"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "https://xn--zca.de/"
    for url in [p.values[0] for p in REFUSED]:
        async with unchanged(client):
            r = await http.post("/api/v1/pools/pool-a/groups", json={"url": url})
            assert_error(r, 422, "invalid_input")
