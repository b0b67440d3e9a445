"""The console without a browser: sessions and their expiry in real Redis, the urgency rules,
the poster's sizes, and the headers and markup every console answer carries (over real HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aredis
import zxingcpp
from PIL import Image

from app.console import charts
from app.console.event_routes import types_of
from app.console.poster_routes import FORMATS, parse_channels
from app.console.sessions import SessionStore
from app.console.summary import Forecast, group_state, most_urgent_first, summarize
from app.console.web import CSP, safe_next
from app.embedded import RedisProcess
from app.links import unreachable_reason
from app.schemas import Alerts, Fallback, GroupPublic, PoolPublic
from app.stats.models import ForecastPublic, ScanTotals, StatsPoint, StatsPublic, StatsSeries
from app.store import keys
from app.store.apikeys import ApiKeyPublic
from tests.console_server import make_key, running_app

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- sessions ------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = NOW.timestamp()

    def __call__(self) -> float:
        return self.t


def _key(scope: str = "admin") -> ApiKeyPublic:
    return ApiKeyPublic(id="0123abcd", name="t", scope=scope, created_at=NOW)  # type: ignore[arg-type]


async def test_a_session_is_stored_by_hash_with_the_idle_ttl(redis_url: str) -> None:
    client = aredis.Redis.from_url(redis_url)
    try:
        store = SessionStore(client, idle_s=600, max_s=3600)
        token = await store.open(_key())
        names = [k.decode() async for k in client.scan_iter(match=keys.CONSOLE_PREFIX + "*")]
        assert len(names) == 1 and token not in names[0]  # only the token's SHA-256
        assert names[0].startswith("lc:{console}:s:")
        assert 590_000 < await client.pttl(names[0]) <= 600_000
        session = await store.get(token)
        assert session is not None and session.scope == "admin" and len(session.csrf) >= 40
        assert session.csrf_ok(session.csrf)
        assert not session.csrf_ok("x") and not session.csrf_ok(None)
        await store.close(token)
        assert await store.get(token) is None
        assert [k async for k in client.scan_iter(match=keys.CONSOLE_PREFIX + "*")] == []
    finally:
        await client.aclose()


async def test_idle_and_absolute_expiry(redis_url: str) -> None:
    client = aredis.Redis.from_url(redis_url)
    clock = Clock()
    try:
        store = SessionStore(client, idle_s=600, max_s=3600, clock=clock)
        token = await store.open(_key())
        name = next(iter([k async for k in client.scan_iter(match=keys.CONSOLE_PREFIX + "s:*")]))
        # a poll does not restart the idle timer; a page view does
        await client.pexpire(name, 1000)
        assert await store.get(token, touch=False) is not None
        assert await client.pttl(name) <= 1000
        assert await store.get(token) is not None
        assert await client.pttl(name) > 590_000
        # near the absolute limit the TTL shrinks to what is left of it
        clock.t += 3600 - 120
        assert await store.get(token) is not None
        assert 0 < await client.pttl(name) <= 120_000
        # past it, the session is gone even though Redis still had it
        clock.t += 121
        assert await store.get(token) is None
        assert not await client.exists(name)
        # idle: Redis drops it when its TTL runs out
        token2 = await store.open(_key("read"))
        name2 = next(iter([k async for k in client.scan_iter(match=keys.CONSOLE_PREFIX + "s:*")]))
        await client.pexpire(name2, 5)
        for _ in range(100):  # bounded: Redis expires it within milliseconds
            if not await client.exists(name2):
                break
            await asyncio.sleep(0.01)
        assert await store.get(token2) is None
        assert await store.get("") is None and await store.get("x" * 500) is None
    finally:
        await client.aclose()


async def test_a_secret_is_revealed_once_to_its_session_only(redis_url: str) -> None:
    """A new key or webhook secret is kept for the page after the redirect: that page shows it
    once; another session, another page, or a second look gets nothing."""
    client = aredis.Redis.from_url(redis_url)
    try:
        store = SessionStore(client, idle_s=600, max_s=3600)
        mine, other = await store.open(_key()), await store.open(_key())
        await store.reveal_next(mine, "webhook", "wh_1", "whsec_abc")
        assert await store.revealed(other, "webhook", "wh_1") is None
        assert await store.revealed(mine, "key", "wh_1") is None  # read, so gone now
        await store.reveal_next(mine, "webhook", "wh_1", "whsec_abc")
        name = keys.console_reveal(hashlib.sha256(mine.encode()).hexdigest())
        assert 0 < await client.ttl(name) <= 120
        assert await store.revealed(mine, "webhook", "wh_1") == "whsec_abc"
        assert await store.revealed(mine, "webhook", "wh_1") is None
        await store.reveal_next(mine, "key", "k1", "lc_x")
        await store.close(mine)  # signing out drops it too
        assert not await client.exists(name)
    finally:
        await client.aclose()


# --- what is urgent ------------------------------------------------------------------------------

def _group(gid: str, count: int, cap: int, *, expires: datetime | None = None,
           enabled: bool = True) -> GroupPublic:
    return GroupPublic(
        id=gid, name="", url=f"https://t.me/+{gid}", capacity=cap, count=count,
        remaining=max(cap - count, 0), fill_ratio=count / cap, expires_at=expires,
        expired=expires is not None and expires <= NOW, weight=1, enabled=enabled,
        mode=None, position=0,
    )


def _pool(pid: str, groups: list[GroupPublic], status: str = "active") -> PoolPublic:
    return PoolPublic(
        id=pid, name=pid, strategy="fill", status=status, mode="redirect",  # type: ignore[arg-type]
        valid_from=None, valid_until=None, sticky_ttl_s=3600, fallback=Fallback(),
        created_at=NOW, timezone="UTC", language="en", alerts=Alerts(),
        scan_url=f"https://lc.example/s/{pid}", groups=groups,
        totals=ScanTotals(scans=9, new=7, sticky=0, fallback=2, paused=0, limited=0),
    )


def test_summary_figures_and_warnings() -> None:
    s = summarize(_pool("p", [_group("a", 200, 200), _group("b", 185, 200),
                              _group("c", 0, 50, enabled=False)]), NOW)
    assert (s.groups_open, s.groups_total, s.capacity, s.remaining) == (1, 3, 400, 15)
    assert (s.scans, s.fallbacks) == (7, 2)
    assert [w.kind for w in s.warnings] == ["low"]  # 15 of 400 is under 10 %
    ok = summarize(_pool("p", [_group("a", 100, 200)]), NOW)
    assert ok.warnings == [] and ok.level is None
    assert [w.kind for w in summarize(_pool("p", [_group("a", 5, 5)]), NOW).warnings] == [
        "exhausted"]
    assert [w.kind for w in summarize(_pool("p", []), NOW).warnings] == ["no_groups"]


def test_expiring_and_expired_codes_are_warned_about() -> None:
    soon = NOW + timedelta(hours=5)
    later = NOW + timedelta(days=3)
    s = summarize(_pool("p", [_group("a", 0, 200, expires=later),
                              _group("b", 0, 200, expires=soon),
                              _group("c", 0, 200, expires=NOW - timedelta(minutes=1))]), NOW)
    assert [(w.kind, w.group.id if w.group else None) for w in s.warnings] == [
        ("expired", "c"), ("expiring", "b")]
    assert s.next_expiry == soon
    assert group_state(s.pool.groups[1], NOW) == "expiring"  # type: ignore[index]
    assert group_state(s.pool.groups[2], NOW) == "expired"  # type: ignore[index]


def test_a_forecast_adds_a_time_warning() -> None:
    pool = _pool("p", [_group("a", 100, 200)])
    s = summarize(pool, NOW, Forecast(rate_per_min=2.0, minutes_left=50))
    assert [w.kind for w in s.warnings] == ["low_time"]
    assert s.warnings[0].at == NOW + timedelta(minutes=50)
    assert summarize(pool, NOW, Forecast(rate_per_min=0.1, minutes_left=1000)).warnings == []


def test_the_warnings_use_the_pools_own_alert_thresholds() -> None:
    """The console warns where the pool's chat alerts fire: its low_percent, low_minutes and
    expiring_hours, not fixed numbers."""
    groups = [_group("a", 170, 200, expires=NOW + timedelta(hours=30))]
    calm = summarize(_pool("p", groups), NOW, Forecast(rate_per_min=1.0, minutes_left=90))
    assert calm.warnings == []  # 15 % left, 90 minutes, 30 hours: under no default threshold
    strict = _pool("p", groups)
    strict.alerts = Alerts(low_percent=20, low_minutes=120, expiring_hours=48)
    s = summarize(strict, NOW, Forecast(rate_per_min=1.0, minutes_left=90))
    assert [w.kind for w in s.warnings] == ["low_time", "low", "expiring"]
    assert s.warnings[1].percent == 20
    assert group_state(groups[0], NOW, timedelta(hours=48)) == "expiring"
    assert group_state(groups[0], NOW) == "open"


def test_the_summary_takes_the_pools_forecast() -> None:
    pool = _pool("p", [_group("a", 100, 200, expires=NOW + timedelta(hours=3)),
                       _group("b", 0, 200, expires=NOW + timedelta(hours=2))])
    pool.forecast = ForecastPublic(
        rate_per_min_5m=3.0, rate_per_min_15m=2.0, room_left=300, room_expiring=40,
        minutes_to_exhaustion=30.0, exhausts_at=NOW + timedelta(minutes=30),
        next_expiry=NOW + timedelta(hours=2), next_expiry_group="b", groups=[])
    s = summarize(pool, NOW)
    assert s.forecast == Forecast(rate_per_min=3.0, minutes_left=30.0)
    assert s.warnings[0].kind == "low_time" and s.warnings[0].at == NOW + timedelta(minutes=30)
    assert s.next_expiry_group is not None and s.next_expiry_group.id == "b"


def test_the_most_urgent_pool_comes_first() -> None:
    calm = summarize(_pool("calm", [_group("a", 1, 200)]), NOW)
    paused = summarize(_pool("paused", [_group("a", 1, 200)], status="paused"), NOW)
    low = summarize(_pool("low", [_group("a", 190, 200)]), NOW)
    gone = summarize(_pool("gone", [_group("a", 200, 200)]), NOW)
    expiring = summarize(_pool("exp", [_group("a", 0, 200, expires=NOW + timedelta(hours=2))]),
                         NOW)
    order = [s.pool.id for s in most_urgent_first([calm, paused, expiring, low, gone])]
    assert order == ["gone", "low", "exp", "paused", "calm"]


# --- poster --------------------------------------------------------------------------------------

# --- statistics and events ---------------------------------------------------------------------

def _series(kind: str, key: str | None, scans: list[int], new: list[int],
            visitors: list[int | None] | None = None) -> StatsSeries:
    starts = [NOW + timedelta(hours=i) for i in range(len(scans))]
    vis = visitors or [None] * len(scans)
    points = [StatsPoint(start=t, scans=a, new=b, visitors=v)
              for t, a, b, v in zip(starts, scans, new, vis, strict=True)]
    total = StatsPoint(start=NOW, scans=sum(scans), new=sum(new),
                       visitors=sum(v or 0 for v in vis) if visitors else None)
    return StatsSeries(kind=kind, key=key, name=None, points=points,  # type: ignore[arg-type]
                       total=total)


def _stats(step: str, by: str | None, series: list[StatsSeries]) -> StatsPublic:
    return StatsPublic(pool_id="p", timezone="Asia/Shanghai", step=step,  # type: ignore[arg-type]
                       by=by, start=NOW, end=NOW, series=series)  # type: ignore[arg-type]


def test_a_chart_has_the_views_columns() -> None:
    pool = _series("pool", None, [5, 7], [4, 6], [4, 5])
    chart = charts.build(_stats("day", None, [pool]), "outcomes", str)
    assert [c.key for c in chart.columns] == ["scans", "visitors", "new", "sticky", "fallback"]
    assert chart.columns[1].values == [4, 5] and chart.columns[1].total == 9
    payload = chart.payload()
    assert payload["x"] == [int(NOW.timestamp()), int(NOW.timestamp()) + 3600]
    assert payload["tz"] == "Asia/Shanghai" and len(payload["series"]) == 5
    # hourly: no visitors (the store counts them per day)
    hourly = charts.build(_stats("hour", None, [pool]), "outcomes", str)
    assert "visitors" not in [c.key for c in hourly.columns]

    # channels: each channel's page views, its visitors in the table only, and the scans that
    # came without a channel
    a = _series("channel", "poster-a", [3, 1], [3, 1], [3, 1])
    b = _series("channel", "window", [1, 2], [1, 2], [1, 2])
    chart = charts.build(_stats("day", "channel", [pool, a, b]), "channels", str)
    cols = {c.key: c for c in chart.columns}
    assert cols["c:poster-a"].values == [3, 1] and cols["c:window"].values == [1, 2]
    assert cols["c:"].values == [1, 4] and cols["c:"].total == 5
    assert not cols["cv:poster-a"].chart and cols["cv:poster-a"].values == [3, 1]
    assert [s["key"] for s in chart.payload()["series"]] == ["c:poster-a", "c:window", "c:"]


def test_past_ten_groups_the_smallest_are_summed() -> None:
    pool = _series("pool", None, [66, 0], [66, 0])
    groups = [_series("group", f"g{i}", [i, 0], [i, 0]) for i in range(1, 12)]
    chart = charts.build(_stats("hour", "group", [pool, *groups]), "groups", str)
    keys_ = [c.key for c in chart.columns]
    assert len(keys_) == charts.MAX_LINES + 1 and keys_[-1] == "g:~others"
    assert "g:g1" not in keys_ and chart.columns[-1].values == [1, 0]  # g1 was the smallest
    assert sum(c.total or 0 for c in chart.columns) == 66


def test_stat_ranges_and_views() -> None:
    assert charts.pick("7d", "channels") == ("7d", "channels")
    assert charts.pick("1y", "<script>") == ("24h", "outcomes")
    assert charts.window("24h", NOW, 35) == ("hour", NOW - timedelta(hours=24))
    assert charts.window("30d", NOW, 35) == ("day", NOW - timedelta(days=29))
    assert charts.window("30d", NOW, 7) == ("day", NOW - timedelta(days=7))  # what is kept


def test_the_event_filter() -> None:
    assert set(types_of("alerts")) == {"group.full", "pool.low", "pool.exhausted",
                                       "pool.recovered", "group.expiring", "group.expired"}
    assert "key.created" in types_of("changes") and "group.full" not in types_of("changes")
    assert types_of("group.full") == ("group.full",)
    assert types_of("") == () and types_of("nonsense") == ()


@pytest.mark.parametrize("cm", [5, 10, 20])
def test_poster_files_print_at_their_size(cm: int) -> None:
    data = "https://live.example.com/s/spring-camp?ch=lobby"
    image = Image.open(io.BytesIO(FORMATS["png"].draw(data, cm)))
    printed_cm = image.width / image.info["dpi"][0] * 2.54
    assert abs(printed_cm - cm) < 0.05
    assert image.info["dpi"][0] >= 250  # sharp enough for print
    assert [c.text for c in zxingcpp.read_barcodes(image)] == [data]
    svg = FORMATS["svg"].draw(data, cm).decode()
    assert f'width="{cm}cm" height="{cm}cm"' in svg and "viewBox" in svg
    pdf = FORMATS["pdf"].draw(data, cm)
    box = re.search(rb"MediaBox ?\[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert pdf.startswith(b"%PDF") and box
    assert abs(float(box.group(1)) / 72 * 2.54 - cm) < 0.01
    eps = FORMATS["eps"].draw(data, cm).decode()
    bbox = re.search(r"%%BoundingBox: 0 0 ([\d.]+)", eps)
    assert eps.startswith("%!PS-Adobe") and bbox
    assert abs(float(bbox.group(1)) / 72 * 2.54 - cm) < 0.05


def test_channels_and_loopback() -> None:
    assert parse_channels("lobby, window-2，lobby bad/name") == (["lobby", "window-2"],
                                                               ["bad/name"])
    def is_loopback(url: str) -> bool:
        return unreachable_reason(url) is not None

    assert is_loopback("http://127.0.0.1:8000") and is_loopback("http://localhost:8000")
    assert is_loopback("http://[::1]:8000") and is_loopback("http://0.0.0.0")
    assert not is_loopback("https://live.example.com") and not is_loopback("http://10.0.0.5")


def test_redirect_targets_stay_in_the_console() -> None:
    assert safe_next("/console/pools/a") == "/console/pools/a"
    for bad in ("https://evil.example", "//evil.example", "/console\\@evil", "/other", None,
                "/console/\u2028x"):
        assert safe_next(bad) == "/console"


# --- every answer over HTTP ----------------------------------------------------------------

@pytest.fixture
def app_base(redis_url: str) -> Iterator[str]:
    with running_app(redis_url) as base:
        yield base


@contextmanager
def _signed_in(base: str, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as c:
        answer = c.post("/console/signin", data={"key": key}, headers={"Origin": base})
        assert answer.status_code == 303
        yield c


def test_every_console_answer_has_the_security_headers_and_no_inline_code(
    app_base: str, redis_url: str
) -> None:
    _, key = make_key(redis_url, "admin")
    with _signed_in(app_base, key) as c:
        token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/console").text)
        assert token
        created = c.post("/console/pools", data={"csrf": token.group(1), "id": "hdr-test",
                                                 "fallback_kind": "none"},
                         headers={"Origin": app_base})
        assert created.status_code == 303
        c.post("/console/pools/hdr-test/groups", data={
            "csrf": token.group(1), "url": "https://t.me/+abc", "capacity": "3"},
            headers={"Origin": app_base})
        pages = ["/console", "/console/live", "/console/pools/new", "/console/pools/hdr-test",
                 "/console/pools/hdr-test/live", "/console/pools/hdr-test/edit",
                 "/console/pools/hdr-test/poster?channels=a", "/console/pools/hdr-test/delete",
                 "/console/pools/hdr-test/groups/g1/reset", "/console/keys",
                 "/console/pools/hdr-test/stats?range=7d&view=channels",
                 "/console/pools/hdr-test/stats/panel", "/console/pools/hdr-test/events",
                 "/console/pools/hdr-test/events/live", "/console/events?type=alerts",
                 "/console/events/more", "/console/pools/hdr-test/groups/g1/replace",
                 "/console/webhooks", "/console/webhooks/new", "/console/webhooks/dead-letters",
                 "/console/pools/nope", "/console/pools/hdr-test/poster.png?size=5",
                 "/console/pools/hdr-test/poster.svg?size=preview",
                 "/console/pools/hdr-test/poster.pdf?size=10",
                 "/console/pools/hdr-test/stats.csv?range=30d&view=groups"]
        answers = [c.get(p) for p in pages]
        answers.append(c.post("/console/pools/hdr-test/pause", headers={"Origin": app_base}))
        answers.append(httpx.get(app_base + "/console/signin"))
        answers.append(httpx.get(app_base + "/console", follow_redirects=False))
        for answer in answers:
            h = answer.headers
            where = f"{answer.request.method} {answer.request.url}"
            assert h["content-security-policy"] == CSP, where
            assert h["x-content-type-options"] == "nosniff", where
            assert h["referrer-policy"] == "same-origin", where
            assert h["cache-control"] == "no-store", where
            if h.get("content-type", "").startswith("text/html"):
                html = answer.text
                assert not re.search(r"\sstyle\s*=", html), where
                assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html), where
                assert not re.search(r"\son[a-z]+\s*=", html), where
        statuses = [a.status_code for a in answers]
        assert statuses[:20] == [200] * 20 and statuses[20] == 404
        assert statuses[21:25] == [200] * 4
        assert statuses[-3:] == [403, 200, 303]
        for policy in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'",
                       "base-uri 'none'"):
            assert policy in CSP
        assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
        static = httpx.get(app_base + "/console/static/vendor/htmx-2.0.11/htmx.min.js")
        assert static.status_code == 200
        assert static.headers["x-content-type-options"] == "nosniff"


def test_redis_down_is_a_503_page_not_a_500(make_redis: Callable[..., RedisProcess]) -> None:
    server = make_redis(appendonly=False)
    _, key = make_key(server.url, "admin")
    with running_app(server.url) as base, _signed_in(base, key) as c:
        assert c.get("/console").status_code == 200
        server.kill()
        answer = c.get("/console", timeout=30)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "2"
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["content-security-policy"] == CSP


def test_a_read_key_sees_statistics_and_events_but_cannot_replace_a_code(
    app_base: str, redis_url: str
) -> None:
    _, admin = make_key(redis_url, "admin")
    _, viewer = make_key(redis_url, "read")
    api = httpx.Client(base_url=app_base + "/api/v1", timeout=10,
                       headers={"Authorization": f"Bearer {admin}"})
    with api:
        assert api.post("/pools", json={"id": "look-only"}).status_code == 201
        assert api.post("/pools/look-only/groups", json={
            "id": "g1", "url": "https://t.me/+look"}).status_code == 201
        with _signed_in(app_base, viewer) as c:
            for path in ("/console/pools/look-only/stats", "/console/pools/look-only/stats.csv",
                         "/console/pools/look-only/events", "/console/events"):
                assert c.get(path).status_code == 200, path
            page = c.get("/console/pools/look-only")
            assert "/groups/g1/replace" not in page.text
            token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            assert token
            assert c.get("/console/pools/look-only/groups/g1/replace").status_code == 403
            refused = c.post("/console/pools/look-only/groups/g1/replace",
                             data={"csrf": token.group(1), "url": "https://t.me/+other"},
                             headers={"Origin": app_base})
            assert refused.status_code == 403
        assert api.get("/pools/look-only/groups").json()[0]["url"] == "https://t.me/+look"


def test_polls_share_the_rendered_figures_only_within_a_language_and_role(
    app_base: str, redis_url: str
) -> None:
    """The live figures of one read of a pool are rendered once and shared, but an admin's (a
    link to replace an expiring code) never reach a read key's console, nor English a Chinese
    one's."""
    _, admin = make_key(redis_url, "admin")
    _, viewer = make_key(redis_url, "read")
    soon = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    with httpx.Client(base_url=app_base + "/api/v1", timeout=10,
                      headers={"Authorization": f"Bearer {admin}"}) as api:
        assert api.post("/pools", json={"id": "shared-view"}).status_code == 201
        assert api.post("/pools/shared-view/groups", json={
            "id": "g1", "url": "https://t.me/+soon", "expires_at": soon}).status_code == 201

    sessions = [(who, lang, key) for who, key in (("admin", admin), ("read", viewer))
                for lang in ("en", "zh-CN")]
    seen: dict[tuple[str, str], str] = {}
    with contextlib.ExitStack() as stack:
        polls = []
        for who, lang, key in sessions:  # every page first: the last one's read is shared
            c = stack.enter_context(_signed_in(app_base, key))
            page = c.get("/console/pools/shared-view", headers={"Accept-Language": lang})
            poller = re.search(r'hx-get="(/console/pools/shared-view/live\?sig=[^"]+)"',
                               page.text)
            assert poller
            polls.append((who, lang, c, html.unescape(poller.group(1))))
        for who, lang, c, url in polls:  # within the shared view's couple of seconds
            answer = c.get(url, headers={"Accept-Language": lang, "HX-Request": "true"})
            assert answer.status_code == 200 and 'id="pool-stats"' in answer.text
            assert 'id="groups"' not in answer.text  # the figures alone
            seen[who, lang] = answer.text
    replace = "/console/pools/shared-view/groups/g1/replace"
    assert replace in seen["admin", "en"] and replace in seen["admin", "zh-CN"]
    assert replace not in seen["read", "en"] and replace not in seen["read", "zh-CN"]
    assert "Replace the code" in seen["admin", "en"]
    assert "Replace the code" not in seen["admin", "zh-CN"]


@pytest.mark.parametrize("public_url, secure", [("https://qr.example.com", True),
                                                ("http://qr.example.com", False)])
def test_the_session_cookie_is_secure_under_https(redis_url: str, public_url: str,
                                                  secure: bool) -> None:
    """Behind a TLS-terminating proxy (public URL https) the session cookie is Secure; it is
    always HttpOnly and SameSite=Strict, and sign-out clears it the same way."""
    _, key = make_key(redis_url, "admin", "cookie test")
    with running_app(redis_url, public_url=public_url) as base, \
            httpx.Client(base_url=base, headers={"Origin": base}) as http:
        r = http.post("/console/signin", data={"key": key, "next": "/console"})
        assert r.status_code == 303, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("lc_console=")
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert ("secure" in attributes) is secure
        token = r.cookies["lc_console"]
        # sent by hand: a client keeps a Secure cookie for https only
        session = {"Cookie": f"lc_console={token}"}
        page = http.get("/console", headers=session)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:500]
        out = http.post("/console/signout", data={"csrf": csrf.group(1)}, headers=session)
        assert out.status_code == 303
        cleared = out.headers["set-cookie"]
        assert cleared.startswith('lc_console=""') or "max-age=0" in cleared.lower()
        assert ("secure" in cleared.lower()) is secure
