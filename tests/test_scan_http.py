"""The scan endpoint over HTTP (in-process ASGI, real Redis): redirect semantics, cookies,
pages, HEAD and bots, unknown pools, and the JSON error shape of the rest of the app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.schemas import Fallback, GroupUpdate, PoolUpdate
from app.settings import Settings
from tests.helpers import Core, counts, seed, snapshot

BOTS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "TelegramBot (like TwitterBot)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "WhatsApp/2.23.20.0 A",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
]
HUMANS = [
    "Mozilla/5.0 (Linux; Android 13; V2183A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/5279 "
    "MMWEBSDK/20230805 MMWEBID/2590 MicroMessenger/8.0.42.2460(0x28002A3B) WeChat/arm64 "
    "Weixin NetType/WIFI Language/zh_CN ABI/arm64",
    "Mozilla/5.0 (Linux; Android 12; SM-G991B; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 WhatsApp/2.23.25.83",
    "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(redis_url=redis_url))
    async with LifespanManager(app) as manager:  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lc.test") as c:
            yield c


async def test_scan_redirects_with_302_no_store_and_a_visitor_cookie(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store, groups=[{"capacity": 1}, {"capacity": 1}])
    r = await client.get("/s/pool-a")
    assert r.status_code == 302
    assert r.headers["location"] == "https://chat.example.com/g1"
    assert r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    attrs = r"; Path=/; Max-Age=\d+; HttpOnly; SameSite=Lax$"
    assert re.match(r"lc_vid=[A-Za-z0-9_-]{22}" + attrs, cookie)
    # a re-scan by the same visitor: same group, nothing consumed, no new cookie
    client.cookies.set("lc_vid", r.cookies["lc_vid"])
    again = await client.get("/s/pool-a")
    assert (again.status_code, again.headers["location"]) == (302, "https://chat.example.com/g1")
    assert "set-cookie" not in again.headers
    assert await counts(core.redis) == {"g1": 1, "g2": 0}
    client.cookies.clear()
    third = await client.get("/s/pool-a/")
    assert third.headers["location"] == "https://chat.example.com/g2"


async def test_malformed_visitor_cookie_is_replaced(core: Core, client: httpx.AsyncClient) -> None:
    await seed(core.store)
    r = await client.get("/s/pool-a", headers={"cookie": "lc_vid=../../etc; other=1"})
    assert r.status_code == 302
    assert re.match(r"lc_vid=[A-Za-z0-9_-]{22};", r.headers["set-cookie"])


async def test_page_mode_shows_a_long_pressable_qr_and_a_link(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store, groups=[{"mode": "page", "url": "https://weixin.qq.com/g/AbC<x>"}])
    r = await client.get("/s/pool-a")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert '<img src="data:image/png;base64,' in r.text
    # stored as given (it is ASCII), HTML-escaped in the page's link
    assert 'href="https://weixin.qq.com/g/AbC&lt;x&gt;"' in r.text
    assert "<x>" not in r.text
    assert await counts(core.redis) == {"g1": 1}


async def test_pool_mode_applies_to_groups_without_their_own(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store, mode="page", groups=[{}])
    page = await client.get("/s/pool-a")
    assert page.status_code == 200 and "location" not in page.headers
    assert '<img src="data:image/png;base64,' in page.text
    assert 'href="https://chat.example.com/g1"' in page.text
    await core.store.update_group("pool-a", "g1", GroupUpdate(mode="redirect"))
    client.cookies.clear()
    r = await client.get("/s/pool-a")
    assert (r.status_code, r.headers["location"]) == (302, "https://chat.example.com/g1")
    assert r.headers["cache-control"] == "no-store"


async def test_head_never_consumes_capacity(core: Core, client: httpx.AsyncClient) -> None:
    await seed(core.store)
    before = await snapshot(core.redis)
    for _ in range(5):
        r = await client.head("/s/pool-a")
        assert r.status_code == 200 and r.content == b""
    assert await snapshot(core.redis) == before


@pytest.mark.parametrize("ua", BOTS)
async def test_link_preview_bots_never_consume(
    core: Core, client: httpx.AsyncClient, ua: str
) -> None:
    await seed(core.store)
    before = await snapshot(core.redis)
    r = await client.get("/s/pool-a", headers={"user-agent": ua})
    assert r.status_code == 200 and "Join the group" in r.text
    assert "set-cookie" not in r.headers
    assert await snapshot(core.redis) == before


@pytest.mark.parametrize("ua", HUMANS)
async def test_in_app_browsers_are_people(core: Core, client: httpx.AsyncClient, ua: str) -> None:
    await seed(core.store)
    r = await client.get("/s/pool-a", headers={"user-agent": ua})
    assert r.status_code == 302
    assert sum((await counts(core.redis)).values()) == 1


@pytest.mark.parametrize("path", ["/s/no-such-pool", "/s/Bad_Id!", "/s/x", "/s/a/b"])
async def test_unknown_pool_is_404_and_writes_nothing(
    core: Core, client: httpx.AsyncClient, path: str
) -> None:
    await seed(core.store)
    before = await snapshot(core.redis)
    r = await client.get(path)
    assert r.status_code == 404 and "does not exist" in r.text
    assert await snapshot(core.redis) == before


async def test_exhausted_pool_redirects_to_fallback_url(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store, groups=[{"capacity": 1}],
               fallback=Fallback(url="https://example.com/full"))
    assert (await client.get("/s/pool-a")).headers["location"] == "https://chat.example.com/g1"
    client.cookies.clear()
    r = await client.get("/s/pool-a")
    assert (r.status_code, r.headers["location"]) == (302, "https://example.com/full")
    assert r.headers["cache-control"] == "no-store"


async def test_exhausted_pool_shows_message_and_contact_qr(
    core: Core, client: httpx.AsyncClient
) -> None:
    fb = Fallback(message="All full <b>sorry</b>", contact_url="https://example.com/wecom")
    await seed(core.store, groups=[{"capacity": 1, "enabled": False}], fallback=fb)
    r = await client.get("/s/pool-a")
    assert r.status_code == 200
    assert "All full &lt;b&gt;sorry&lt;/b&gt;" in r.text
    assert "data:image/png;base64," in r.text and 'href="https://example.com/wecom"' in r.text


async def test_paused_pool_shows_a_page_and_allocates_nothing(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store)
    await core.store.update_pool("pool-a", PoolUpdate(status="paused"))
    r = await client.get("/s/pool-a")
    assert r.status_code == 200 and "paused" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert await counts(core.redis) == {"g1": 0, "g2": 0, "g3": 0}


async def test_only_get_and_head(core: Core, client: httpx.AsyncClient) -> None:
    await seed(core.store)
    r = await client.post("/s/pool-a")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert await counts(core.redis) == {"g1": 0, "g2": 0, "g3": 0}


async def test_channel_is_recorded_and_a_bad_one_is_dropped(
    core: Core, client: httpx.AsyncClient
) -> None:
    await seed(core.store)
    assert (await client.get("/s/pool-a?ch=poster-1")).status_code == 302
    client.cookies.clear()
    assert (await client.get("/s/pool-a?ch=%0d%0aX:1")).status_code == 302
    totals = await core.store.statistics.totals("pool-a")
    assert (totals.new, totals.by_channel) == (2, {"poster-1": 1})


async def test_metrics_count_scans_by_outcome(core: Core, client: httpx.AsyncClient) -> None:
    def value(text: str, outcome: str) -> float:
        m = re.search(rf'livecode_scans_total{{outcome="{outcome}"}} (\S+)', text)
        return float(m.group(1)) if m else 0.0

    await seed(core.store, groups=[{"capacity": 1}])
    before = (await client.get("/metrics")).text
    await client.get("/s/pool-a")
    await client.get("/s/pool-a")  # same visitor: sticky
    client.cookies.clear()
    await client.get("/s/pool-a")  # fallback
    await client.head("/s/pool-a")
    await client.get("/s/nope-nope")
    after = (await client.get("/metrics")).text
    for outcome, n in [("new", 1), ("sticky", 1), ("fallback", 1), ("bot", 1), ("not_found", 1)]:
        assert value(after, outcome) - value(before, outcome) == n, outcome
    count = r"livecode_scan_duration_seconds_count (\S+)"
    counted = [float(m.group(1)) for m in (re.search(count, t) for t in (before, after)) if m]
    assert counted[-1] - (counted[0] if len(counted) == 2 else 0) == 5


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_unknown_api_path_uses_the_json_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert set(r.json()["error"]) == {"code", "message", "details"}
