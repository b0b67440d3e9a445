"""The console's phase 2 in a real browser (Debian's Chromium, Playwright), against the app over
real HTTP with the scheduler running (its dispatcher fills the cross-pool events feed): charts
and their tables against the stats API, the CSV download, the forecast and the warnings after
scans at a rate, the events feed filling live, replacing a code by upload, the pool's timezone
and alert settings, PDF and EPS posters decoded after rendering, and a first-time operator's
whole walk in Chinese at phone width on a freshly started `livecode serve`.

Every page is screenshotted at 1280 and 390 px into build/screenshots/ and checked for
sideways scrolling and axe-core violations (serious or critical); every page's console errors
and CSP violations fail its test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
import zxingcpp
from PIL import Image
from standardwebhooks import Webhook

from app.embedded import RedisProcess, free_port
from app.store import keys
from tests.console_pages import (
    SHOTS,
    WAIT_MS,
    Watch,
    browser,
    open_page,
    qr_png,
    scan,
    shoot,
    signin,
)
from tests.console_server import make_key, running_app
from tests.webhook_receiver import receiving

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect  # noqa: E402

__all__ = ["browser", "open_page"]  # fixtures used by name

ALERT_TYPES = {"group.full", "pool.low", "pool.exhausted", "pool.recovered", "group.expiring",
               "group.expired"}


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_for_console(redis_server: RedisProcess) -> Iterator[str]:
    with redis_server.client() as c:
        c.flushall()
    yield redis_server.url


# webhooks: a receiver on 127.0.0.1, and a failing delivery dead within seconds
WEBHOOK_SETTINGS = {
    "webhook_allow_private": True, "webhook_retry_base_s": 0.2, "webhook_retry_max_delay_s": 1.0,
    "webhook_timeout_s": 2.0, "webhook_connect_timeout_s": 1.0, "webhook_lease_s": 4.0,
    "webhook_max_age_s": 3.0,
}


@pytest.fixture(scope="module")
def server(redis_for_console: str) -> Iterator[str]:
    with running_app(redis_for_console, scheduler=True, **WEBHOOK_SETTINGS) as base:
        yield base


@pytest.fixture(scope="module")
def admin_key(redis_for_console: str) -> str:
    return make_key(redis_for_console, "admin", "ops phone")[1]


@pytest.fixture
def api(server: str, admin_key: str) -> Iterator[httpx.Client]:
    """The admin API, to set up what a test is not about and to read what the console shows."""
    with httpx.Client(base_url=server + "/api/v1", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as client:
        yield client


@pytest.fixture
def r(redis_for_console: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_for_console) as client:
        yield client


def make_pool(api: httpx.Client, pool_id: str, groups: list[dict[str, Any]],
              **fields: Any) -> None:
    assert api.post("/pools", json={"id": pool_id, **fields}).status_code == 201
    if groups:
        answer = api.post(f"/pools/{pool_id}/groups", json=groups)
        assert answer.status_code == 201, answer.text


def group(api: httpx.Client, pool_id: str, group_id: str) -> dict[str, Any]:
    answer: list[dict[str, Any]] = api.get(f"/pools/{pool_id}/groups").json()
    return next(g for g in answer if g["id"] == group_id)


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# --- statistics ----------------------------------------------------------------------------------

def _expected_columns(stats: dict[str, Any], view: str) -> dict[str, list[int | None]]:
    """What the chart of `view` draws, from the stats API's answer."""
    pool = stats["series"][0]
    if view == "outcomes":
        names = ["scans", "visitors", "new", "sticky", "fallback"] if stats["step"] == "day" \
            else ["scans", "new", "sticky", "fallback"]
        return {n: [p[n] for p in pool["points"]] for n in names}
    if view == "groups":
        return {f"g:{s['key']}": [p["new"] for p in s["points"]] for s in stats["series"][1:]}
    out = {f"c:{s['key']}": [p["scans"] for p in s["points"]] for s in stats["series"][1:]}
    out["c:"] = [p["scans"] - sum(s["points"][i]["scans"] for s in stats["series"][1:])
                 for i, p in enumerate(pool["points"])]
    return out


def _drawn(page: Page) -> dict[str, Any]:
    """What uPlot holds (its x values and series) and how much of its canvas it painted."""
    result: dict[str, Any] = page.evaluate("""() => {
        const el = document.getElementById('chart');
        const u = el._uplot;
        const canvas = el.querySelector('canvas');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        let painted = 0;
        for (let i = 3; i < pixels.data.length; i += 4) { if (pixels.data[i]) painted++; }
        return {data: u.data, labels: u.series.map(s => s.label), painted};
    }""")
    return result


def _table(page: Page) -> tuple[list[str], list[list[str]], list[str]]:
    """The data table beside the chart: its column keys, its rows' numbers, its totals."""
    heads = page.locator("#stats-table thead th[data-key]")
    cols = [heads.nth(i).get_attribute("data-key") or "" for i in range(heads.count())]
    rows = page.locator("#stats-table tbody tr")
    body = [[c.strip() for c in rows.nth(i).locator("td").all_text_contents()]
            for i in range(rows.count())]
    totals = [c.strip() for c in page.locator("#stats-table tfoot td").all_text_contents()]
    return cols, body, totals


def _number(text: str) -> int | None:
    return None if text in ("–", "") else int(text.replace(",", ""))


def test_charts_and_tables_show_what_the_stats_api_counts(
    server: str, api: httpx.Client, admin_key: str, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    make_pool(api, "chart-pool", [
        {"id": "g-a", "name": "Group A", "url": "https://t.me/+chartA", "capacity": 4},
        {"id": "g-b", "url": "https://t.me/+chartB", "capacity": 50}],
        name="Chart pool", timezone="Asia/Shanghai")
    plan = ["poster-a"] * 5 + ["window"] * 3 + [""] * 2
    for ch in plan:
        assert scan(server, "chart-pool", ch).status_code == 302

    page, _ = open_page()
    signin(page, server, admin_key)
    views = [("24h", "outcomes", "hour", None, None), ("24h", "groups", "hour", "group", None),
             ("7d", "channels", "day", "channel", None),
             ("30d", "outcomes", "day", None, 29)]
    for range_, view, step, by, days in views:
        params: dict[str, Any] = {"step": step}
        if by:
            params["by"] = by
        if days:
            params["from"] = (datetime.now(UTC) - timedelta(days=days)).isoformat()
        before = api.get("/pools/chart-pool/stats", params=params).json()
        page.goto(f"{server}/console/pools/chart-pool/stats?range={range_}&view={view}")
        expect(page.locator("#chart canvas")).to_have_count(1, timeout=WAIT_MS)
        after = api.get("/pools/chart-pool/stats", params=params).json()
        drawn = _drawn(page)
        payload = json.loads(page.locator("#chart").get_attribute("data-chart") or "{}")
        keys_drawn = [s["key"] for s in payload["series"]]
        # the page matches the API's answer (either side of the page load: an hour may turn)
        stats = next(s for s in (before, after) if drawn["data"][0] == [
            int(datetime.fromisoformat(p["start"]).timestamp())
            for p in s["series"][0]["points"]])
        expected = _expected_columns(stats, view)
        assert {k: v for k, v in zip(keys_drawn, drawn["data"][1:], strict=True)} == {
            k: expected[k] for k in keys_drawn}, view
        assert drawn["painted"] > 500, "uPlot painted next to nothing"
        # the same numbers in the table, row for row, and its totals
        cols, body, totals = _table(page)
        assert len(body) == len(stats["series"][0]["points"])
        for key in keys_drawn:
            i = cols.index(key)
            assert [_number(row[i]) for row in body] == expected[key], (view, key)
        # known figures: 10 new visitors, 4 of them to the first group, 5 + 3 by channel
        by_key = dict(zip(cols, totals, strict=True))
        if view == "outcomes":
            assert (by_key["scans"], by_key["new"], by_key["fallback"]) == ("10", "10", "0")
        elif view == "groups":
            assert (by_key["g:g-a"], by_key["g:g-b"]) == ("4", "6")
            assert "Group A" in (page.locator("#stats-table thead").text_content() or "")
        else:
            assert (by_key["c:poster-a"], by_key["c:window"], by_key["c:"]) == ("5", "3", "2")
            assert by_key["cv:poster-a"] == "5"  # visitors per channel and day
        if (range_, view) == ("24h", "outcomes"):
            shoot(page, "stats-en")
        elif view == "channels":
            page.locator("#stats-table-box summary").click()
            shoot(page, "stats-channels-table-en")

    # the CSV of the view on screen is the API's CSV for the same series
    page.goto(f"{server}/console/pools/chart-pool/stats?range=7d&view=groups")
    api_csv = [api.get("/pools/chart-pool/stats",
                       params={"step": "day", "by": "group", "format": "csv"}).text]
    with page.expect_download() as info:
        page.locator("#stats-csv").click()
    body = Path(info.value.path()).read_bytes()
    api_csv.append(api.get("/pools/chart-pool/stats",
                           params={"step": "day", "by": "group", "format": "csv"}).text)
    assert info.value.suggested_filename == "chart-pool-7d-groups.csv"
    assert body.startswith(b"\xef\xbb\xbf")  # Excel and WPS read it as UTF-8
    text = body[3:].decode()
    assert text in api_csv
    rows = text.splitlines()
    assert rows[0].startswith("series,key,start,scans,new")
    assert any(r.startswith("group,g-a,") and ",4,4," in r for r in rows)

    zh, _ = open_page(locale="zh-CN")
    signin(zh, server, admin_key)
    zh.goto(server + "/console/pools/chart-pool/stats?range=7d&view=outcomes")
    expect(zh.locator("#chart canvas")).to_have_count(1)
    expect(zh.locator("#chart-h")).to_have_text("每日扫码与访客")
    assert "访客数 (UV)" in (zh.locator("#stats-table thead").text_content() or "")
    shoot(zh, "stats-zh")


def test_the_chart_follows_the_pools_timezone(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    """Hourly buckets start on the pool's own hours: in Asia/Kolkata (UTC+05:30) at :30 UTC,
    and the table and the axis say the local hour."""
    make_pool(api, "kolkata", [{"url": "https://t.me/+kolkata", "capacity": 9}],
              timezone="Asia/Kolkata")
    assert scan(server, "kolkata").status_code == 302
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/kolkata/stats")
    expect(page.locator("#chart canvas")).to_have_count(1)
    xs = _drawn(page)["data"][0]
    assert all(x % 3600 == 1800 for x in xs)
    last = datetime.fromtimestamp(xs[-1], UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    last_row = page.locator("#stats-table tbody tr").last.locator("th").text_content() or ""
    assert last.strftime("%-I:00") in last_row
    expect(page.locator("#stats-panel .help").first).to_contain_text("Asia/Kolkata")


# --- forecast and warnings ---------------------------------------------------------------------

def test_the_forecast_and_warnings_follow_scans_live(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    make_pool(api, "rush", [
        {"id": "g1", "name": "First", "url": "https://t.me/+rush1", "capacity": 30},
        {"id": "g2", "name": "微信二群", "url": "https://weixin.qq.com/g/RushExpiring01",
         "capacity": 100, "expires_at": in_hours(5)},
        {"id": "g3", "name": "Big", "url": "https://t.me/+rush3", "capacity": 5000,
         "expires_at": in_hours(8)}],
        name="Rush", alerts={"low_minutes": 600, "low_percent": 10, "expiring_hours": 6})
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/rush")
    page.evaluate("window.__sameDocument = true")
    # before any scan: no forecast, the expiring WeChat code is warned about with its fix
    expect(page.locator(".runs-out")).to_have_text("–")
    expiring = page.locator("#pool-stats .alert[data-kind=expiring]")
    expect(expiring).to_contain_text("微信二群")
    expect(expiring.get_by_role("link", name=re.compile("Replace the code"))).to_have_attribute(
        "href", "/console/pools/rush/groups/g2/replace")
    assert "primary" in (page.locator("#g-g2 .actions a", has_text="Replace code")
                         .get_attribute("class") or "")

    for _ in range(24):
        assert scan(server, "rush").status_code == 302
    # the page updates by itself: a rate, a time to exhaustion, a low-time warning first
    expect(page.locator(".runs-out")).not_to_have_text("–", timeout=WAIT_MS)
    low = page.locator("#pool-stats .alert[data-kind=low_time]")
    expect(low).to_contain_text("at the current rate the room runs out in")
    kinds = [k for k in page.locator("#pool-stats .alert").evaluate_all(
        "els => els.map(e => e.dataset.kind)")]
    assert kinds == ["low_time", "expiring"]
    pool = api.get("/pools/rush").json()
    f = pool["forecast"]
    shown_minutes = float(page.locator(".runs-out").get_attribute("data-minutes") or "nan")
    assert abs(shown_minutes - f["minutes_to_exhaustion"]) <= 0.25 * f["minutes_to_exhaustion"]
    shown_rate = float(page.locator(".rate").get_attribute("data-rate") or "nan")
    assert abs(shown_rate - f["rate_per_min_5m"]) <= 0.3 * f["rate_per_min_5m"]
    # the big group's code expires before it would fill at this rate: that room is lost
    assert f["room_expiring"] > 0
    lost = int(page.locator(".lost").get_attribute("data-places") or "-1")
    assert abs(lost - f["room_expiring"]) <= 0.3 * f["room_expiring"]
    expect(page.locator("#gfill-g2 .to-full")).to_contain_text(re.compile(r"full in about \d+"))
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "pool-forecast-en")

    # the overview says the same, the most urgent pool first
    page.goto(server + "/console")
    card = page.locator(".pool-card", has_text="Rush")
    expect(card.locator(".alert[data-kind=low_time]")).to_be_visible()
    expect(card.locator(".runs-out")).not_to_have_text("–")


def test_low_room_then_exhausted_comes_first(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    make_pool(api, "tiny", [{"id": "t1", "url": "https://t.me/+tiny1", "capacity": 20}],
              name="Tiny", alerts={"low_minutes": 1, "low_percent": 10})
    page, _ = open_page(locale="zh-CN")
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/tiny")
    for _ in range(19):
        scan(server, "tiny")
    low = page.locator("#pool-stats .alert[data-kind=low]")
    expect(low).to_have_text("名额紧张：剩余名额不足 10%。", timeout=WAIT_MS)
    scan(server, "tiny")
    expect(page.locator("#pool-stats .alert").first).to_have_attribute(
        "data-kind", "exhausted", timeout=WAIT_MS)
    expect(page.locator("#pool-stats .alert[data-kind=low]")).to_have_count(0)
    page.goto(server + "/console")
    first = page.locator(".pool-card").first
    expect(first).to_contain_text("Tiny")
    expect(first.locator(".alert").first).to_have_attribute("data-kind", "exhausted")
    shoot(page, "overview-phase2-zh")


# --- events --------------------------------------------------------------------------------------

def test_the_events_feed_fills_live_in_words(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/events")
    page.evaluate("window.__sameDocument = true")

    make_pool(api, "feed-pool", [{"id": "f1", "name": "Full one", "url": "https://t.me/+feed1",
                                  "capacity": 2}], name="Feed pool")
    for _ in range(2):
        assert scan(server, "feed-pool").status_code == 302
    full = page.locator("#event-list li[data-type='group.full']",
                        has_text="Group Full one is full: 2 of 2.")
    expect(full).to_have_count(1, timeout=WAIT_MS)
    expect(full.get_by_role("link", name="Feed pool")).to_have_attribute(
        "href", "/console/pools/feed-pool/events")
    expect(page.locator("#event-list li[data-type='pool.created']", has_text="Feed pool"
                        ).first).to_contain_text("Key “ops phone” created the live code.")
    expect(page.locator("#event-list li[data-type='group.created']").first).to_contain_text(
        "Key “ops phone” added the group Full one.")
    # newest first, each once
    ids = page.locator("#event-list li.event").evaluate_all("els => els.map(e => e.id)")
    assert len(ids) == len(set(ids))
    types = page.locator("#event-list li.event").evaluate_all("els => els.map(e => e.dataset.type)")
    assert types.index("group.full") < types.index("pool.created")
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "events-en")

    # filter: only alerts (the select submits itself)
    page.select_option("#ev-type", "alerts")
    expect(page).to_have_url(re.compile(r"type=alerts"))
    types = page.locator("#event-list li.event").evaluate_all("els => els.map(e => e.dataset.type)")
    assert types and set(types) <= ALERT_TYPES

    # a pool's own events, a page at a time: "load older events" brings the rest, once each
    api.post("/pools/feed-pool/groups",
             json=[{"url": f"https://t.me/+more{i}", "capacity": 5} for i in range(40)])
    page.goto(server + "/console/pools/feed-pool/events")
    expect(page.locator("#event-list li.event")).to_have_count(30)
    everything = api.get("/events", params={"pool": "feed-pool", "limit": 500}).json()["items"]
    page.get_by_role("link", name="Load older events").click()
    expect(page.locator("#event-list li.event")).to_have_count(len(everything))
    expect(page.locator("#events-more-box")).to_contain_text("That is every event kept.")
    ids = page.locator("#event-list li.event").evaluate_all("els => els.map(e => e.id)")
    assert len(ids) == len(set(ids)) == len(everything)
    shoot(page, "pool-events-en")

    zh, _ = open_page(locale="zh-CN")
    signin(zh, server, admin_key)
    zh.goto(server + "/console/events?type=group.full")
    expect(zh.locator("#event-list li.event").first).to_contain_text("群 Full one 已满员：2/2。")
    shoot(zh, "events-zh")
    zh.goto(server + "/console/pools/feed-pool/events")
    expect(zh.locator("#event-list li[data-type='group.created'] .ev-text").first).to_have_text(
        re.compile(r"密钥“ops phone”添加了群 g\d+。"))
    shoot(zh, "pool-events-zh")


# --- replace a code ------------------------------------------------------------------------------

def test_replace_a_code_by_upload_keeps_its_count_and_place(
    server: str, api: httpx.Client, admin_key: str, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    old, new = "https://weixin.qq.com/g/RenewOld0001", "https://weixin.qq.com/g/RenewNew0002"
    make_pool(api, "renew", [
        {"id": "w1", "name": "周末群", "url": old, "capacity": 10, "expires_at": in_hours(3),
         "mode": "page"},
        {"id": "w2", "url": "https://t.me/+renew2", "capacity": 10}], name="Renew")
    for _ in range(4):
        assert scan(server, "renew").status_code == 200  # the WeChat QR page
    before = group(api, "renew", "w1")

    page, watch = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/renew")
    page.locator("#pool-stats .alert[data-kind=expiring]").get_by_role(
        "link", name=re.compile("Replace the code")).click()
    expect(page.locator("h2#replace-h")).to_contain_text("周末群")
    shoot(page, "replace-en")

    # an image without a QR code: refused, nothing changes
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    page.set_input_files("#r-file", str(blank))
    watch.allowed += ["status of 422", f"422 {server}/console/pools/renew/groups/w1/replace"]
    page.get_by_role("button", name="Replace the code").click()
    expect(page.locator("#replace-err")).to_have_text("No QR code found in the image.")
    assert group(api, "renew", "w1")["url"] == old

    shot = tmp_path / "new-code.png"
    shot.write_bytes(qr_png(new))
    page.set_input_files("#r-file", str(shot))
    page.get_by_role("button", name="Replace the code").click()
    expect(page).to_have_url(re.compile(r"/console/pools/renew\?done=replaced#g-w1"))
    expect(page.locator(".notice.ok")).to_contain_text("Code replaced")
    row = page.locator("#g-w1")
    expect(row).to_contain_text(new)
    expect(row.locator(".count")).to_have_text("4 / 10")
    expect(row.locator("#gexp-w1")).to_contain_text(re.compile(r"in (7|6) days"))
    expect(page.locator("#pool-stats .alert[data-kind=expiring]")).to_have_count(0)
    after = group(api, "renew", "w1")
    assert (after["id"], after["count"], after["position"], after["capacity"]) == (
        before["id"], before["count"], before["position"], before["capacity"])
    expires = datetime.fromisoformat(after["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
    assert [g["id"] for g in api.get("/pools/renew/groups").json()] == ["w1", "w2"]
    # the next visitor is placed in the renewed group, shown its new code
    assert new in scan(server, "renew").text

    # by pasting the link, in Chinese
    zh, _ = open_page(locale="zh-CN")
    signin(zh, server, admin_key)
    zh.goto(server + "/console/pools/renew/groups/w2/replace")
    shoot(zh, "replace-zh")
    zh.fill("#r-url", "https://t.me/+renew2b")
    zh.get_by_role("button", name="更换群码").click()
    expect(zh.locator(".notice.ok")).to_have_text("群码已更换：同一个群，计数和顺序不变。")
    assert group(api, "renew", "w2")["url"] == "https://t.me/+renew2b"


# --- settings ------------------------------------------------------------------------------------

def test_pool_settings_save_timezone_language_and_thresholds(
    server: str, api: httpx.Client, admin_key: str, r: redis.Redis,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    make_pool(api, "zones", [{"id": "z1", "url": "https://t.me/+zones", "capacity": 5,
                              "expires_at": "2030-01-01T00:00:00Z"}], name="Zones")
    page, watch = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/zones/edit")
    expect(page.locator("#p-tz-other-box")).to_be_hidden()
    page.select_option("#p-tz", "Asia/Tokyo")
    page.select_option("#p-lang", "en")
    page.fill("#p-low-min", "90")
    page.fill("#p-low-pct", "15")
    page.fill("#p-low-every", "20")
    page.fill("#p-exp-h", "48")
    shoot(page, "settings-phase2-en")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice.ok")).to_have_text("Saved.")
    pool = api.get("/pools/zones").json()
    assert (pool["timezone"], pool["language"]) == ("Asia/Tokyo", "en")
    assert pool["alerts"] == {"low_minutes": 90, "low_percent": 15, "low_every_minutes": 20,
                              "expiring_hours": 48}
    # times on the pool's pages are in its zone, and say so
    expect(page.locator("#gexp-z1")).to_contain_text("Jan 1, 2030, 9:00:00 AM Asia/Tokyo")

    # any other IANA zone, typed
    page.goto(server + "/console/pools/zones/edit")
    page.select_option("#p-tz", "other")
    expect(page.locator("#p-tz-other")).to_be_focused()
    page.fill("#p-tz-other", "Europe/Madrid")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice.ok")).to_have_text("Saved.")
    assert api.get("/pools/zones").json()["timezone"] == "Europe/Madrid"
    page.goto(server + "/console/pools/zones/edit")
    expect(page.locator("#p-tz")).to_have_value("other")
    expect(page.locator("#p-tz-other")).to_have_value("Europe/Madrid")

    # a zone that does not exist, and a threshold out of range: refused on their fields
    stored_before = r.hgetall(keys.pool("zones"))
    watch.allowed += ["status of 422", f"422 {server}/console/pools/zones/edit"]
    page.fill("#p-tz-other", "Mars/Olympus")
    page.fill("#p-low-pct", "101")
    page.locator("#p-low-pct").evaluate("el => el.removeAttribute('max')")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#p-tz-other-err")).to_contain_text("Asia/Shanghai")
    assert page.locator("#p-tz-other").get_attribute("aria-invalid") == "true"
    assert r.hgetall(keys.pool("zones")) == stored_before

    zh, _ = open_page(locale="zh-CN")
    signin(zh, server, admin_key)
    zh.goto(server + "/console/pools/zones/edit")
    expect(zh.locator("legend", has_text="时区与提醒")).to_be_visible()
    shoot(zh, "settings-phase2-zh")


# --- posters ------------------------------------------------------------------------------------

def _decode_pdf(path: Path, tmp_path: Path) -> list[str]:
    out = tmp_path / "page"
    subprocess.run(["pdftoppm", "-r", "200", "-png", "-singlefile", str(path), str(out)],
                   check=True, timeout=60)
    return [c.text for c in zxingcpp.read_barcodes(Image.open(f"{out}.png"))]


def test_pdf_and_eps_posters_print_at_their_size_and_scan(
    server: str, api: httpx.Client, admin_key: str, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    make_pool(api, "print-me", [], name="Print me")
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/print-me/poster?channels=lobby")
    shoot(page, "poster-phase2-en")
    card = page.locator(".poster").nth(1)
    with page.expect_download() as info:
        card.get_by_role("link", name="PDF 10 cm").click()
    pdf = Path(info.value.path())
    assert info.value.suggested_filename == "print-me-lobby-10cm.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"MediaBox ?\[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert box and abs(float(box.group(1)) / 72 * 2.54 - 10) < 0.01
    assert _decode_pdf(pdf, tmp_path) == [f"{server}/s/print-me?ch=lobby"]

    with page.expect_download() as info:
        page.locator(".poster").first.get_by_role("link", name="EPS 5 cm").click()
    eps = Path(info.value.path()).read_text()
    assert eps.startswith("%!PS-Adobe")
    bbox = re.search(r"%%BoundingBox: 0 0 ([\d.]+) ([\d.]+)", eps)
    assert bbox and abs(float(bbox.group(1)) / 72 * 2.54 - 5) < 0.05


# --- webhooks ------------------------------------------------------------------------------------

def test_a_webhook_is_added_tested_and_its_deliveries_inspected(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    make_pool(api, "hook-pool", [{"id": "h1", "name": "Hook one", "url": "https://t.me/+hook1",
                                  "capacity": 2}], name="Hook pool")
    make_pool(api, "quiet-pool", [{"url": "https://t.me/+quiet", "capacity": 1}])
    with receiving() as receiver:
        page, _ = open_page()
        signin(page, server, admin_key)
        page.goto(server + "/console/webhooks")
        shoot(page, "webhooks-empty-en")
        page.get_by_role("link", name="Add the first webhook").click()
        page.fill("#w-name", "Ops endpoint")
        page.fill("#w-url", receiver.url())
        page.check("input[name=events_mode][value=some]")
        page.check("input[name=events][value='group.full']")
        page.check("input[name=events][value='pool.exhausted']")
        page.check("input[name=pools_mode][value=some]")
        page.check("input[name=pools][value='hook-pool']")
        shoot(page, "webhook-new-en")
        page.get_by_role("button", name="Add the webhook").click()

        # the generated secret, shown once; the stored webhook is what the form said
        expect(page).to_have_url(re.compile(r"/console/webhooks/wh_[0-9a-f]+\?done=wh_created"))
        expect(page.locator(".notice.ok").first).to_contain_text("Webhook added.")
        secret = page.locator("#new-secret").input_value()
        assert secret.startswith("whsec_")
        wid = page.url.split("/console/webhooks/")[1].split("?")[0]
        stored = api.get(f"/webhooks/{wid}").json()
        assert (stored["name"], stored["format"], stored["enabled"]) == (
            "Ops endpoint", "standard", True)
        assert stored["events"] == ["group.full", "pool.exhausted"]
        assert stored["pools"] == ["hook-pool"] and stored["has_secret"] and not stored["secret"]
        shoot(page, "webhook-en")
        page.reload()  # a GET: nothing is posted again, and the secret is gone
        assert secret not in page.content()
        assert len(api.get("/webhooks").json()["items"]) == 1

        # a test: sent now, its attempt shown, signed with that secret
        page.select_option("#t-lang", "zh-CN")
        page.get_by_role("button", name="Send a test message now").click()
        expect(page.locator("#test-result")).to_contain_text(
            re.compile(r"Delivered: HTTP 200 in [\d,]+ ms\."))
        (test,) = receiver.wait_for(1)
        payload = Webhook(secret).verify(test.body, test.headers)
        assert payload["type"] == "webhook.test"

        # an event it wants: delivered by the deliverer, in the log without a reload
        page.evaluate("window.__sameDocument = true")
        for _ in range(2):
            scan(server, "hook-pool")
        scan(server, "quiet-pool")  # fills a group of a pool it does not follow
        row = page.locator("#deliveries li.delivery[data-type='group.full']")
        expect(row).to_have_attribute("data-status", "delivered", timeout=WAIT_MS)
        expect(row).to_contain_text("Group Hook one is full: 2 of 2.")
        expect(row.locator(".attempts li.ok")).to_contain_text("Delivered: HTTP 200")
        got = receiver.wait_for(2)[1]
        event = Webhook(secret).verify(got.body, got.headers)["data"]
        assert (event["type"], event["pool_id"], event["group_id"]) == (
            "group.full", "hook-pool", "h1")
        assert page.evaluate("window.__sameDocument") is True

        # the endpoint fails: retried, then a dead letter; sent again once it works
        receiver.fail_next(1000, "status", 500)
        scan(server, "hook-pool")  # no room: pool.exhausted
        dead = page.locator("#deliveries li.delivery[data-type='pool.exhausted']")
        expect(dead).to_have_attribute("data-status", "dead", timeout=20_000)
        expect(dead.locator(".attempts li.bad").first).to_contain_text("Failed: HTTP 500")
        assert len(dead.locator(".attempts li").all()) >= 2  # it was retried
        shoot(page, "webhook-log-en")
        page.goto(server + "/console/webhooks")
        expect(page.locator(".notice.bad")).to_contain_text("Some deliveries failed for good.")
        page.get_by_role("link", name="See the dead letters").click()
        letter = page.locator("li.delivery[data-type='pool.exhausted']")
        expect(letter).to_contain_text("Exhausted: every group is full")
        expect(letter.get_by_role("link", name="Ops endpoint")).to_be_visible()
        shoot(page, "dead-letters-en")
        with receiver.lock:
            receiver.plans.clear()
        before = receiver.count()
        letter.get_by_role("button", name="Send again").click()
        expect(page.locator(".notice.ok")).to_contain_text("Delivery queued again")
        receiver.wait_for(before + 1)
        page.goto(f"{server}/console/webhooks/{wid}?status=delivered")
        expect(page.locator("li.delivery[data-type='pool.exhausted']")).to_have_attribute(
            "data-status", "delivered", timeout=WAIT_MS)

        # edit: every event, and off; then on again
        page.goto(f"{server}/console/webhooks/{wid}/edit")
        page.check("input[name=events_mode][value=all]")
        page.uncheck("input[name=enabled]")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".notice.ok")).to_have_text("Saved.")
        stored = api.get(f"/webhooks/{wid}").json()
        assert stored["events"] is None and stored["enabled"] is False
        assert stored["has_secret"]  # kept: the form left it empty
        expect(page.locator("h1 .badge")).to_have_text("Off")
        page.get_by_role("button", name="Turn on").click()
        expect(page.locator(".notice.ok")).to_contain_text("Webhook on")
        assert api.get(f"/webhooks/{wid}").json()["enabled"] is True

        zh, _ = open_page(locale="zh-CN")
        signin(zh, server, admin_key)
        zh.goto(server + "/console/webhooks")
        expect(zh.locator(".webhook-card")).to_contain_text("标准 Webhook（带签名的 JSON）")
        shoot(zh, "webhooks-zh")
        zh.goto(f"{server}/console/webhooks/{wid}")
        expect(zh.locator("#deliveries")).to_contain_text("群 Hook one 已满员：2/2。")
        shoot(zh, "webhook-zh")
        zh.goto(f"{server}/console/webhooks/{wid}/edit")
        shoot(zh, "webhook-edit-zh")

        # delete, after a confirmation
        page.goto(f"{server}/console/webhooks/{wid}")
        page.get_by_role("link", name="Delete…").click()
        page.get_by_role("button", name="Delete the webhook").click()
        expect(page).to_have_url(re.compile(r"/console/webhooks\?done=deleted"))
        assert api.get(f"/webhooks/{wid}").status_code == 404


def test_a_webhook_form_refuses_what_the_store_refuses(
    server: str, api: httpx.Client, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    page, watch = open_page()
    watch.allowed += ["status of 422", f"422 {server}/console/webhooks"]
    signin(page, server, admin_key)
    before = api.get("/webhooks").json()["items"]
    page.goto(server + "/console/webhooks/new")
    page.fill("#w-url", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc")
    page.check("input[name=format][value=wecom]")
    page.fill("#w-secret", "SECnotforwecom")
    page.check("input[name=events_mode][value=some]")  # and no type ticked
    page.get_by_role("button", name="Add the webhook").click()
    expect(page.locator("#w-events-err")).to_have_text(
        "Tick at least one kind of event, or choose every event.")
    page.check("input[name=events_mode][value=all]")
    page.fill("#w-secret", "SECnotforwecom")
    page.get_by_role("button", name="Add the webhook").click()
    expect(page.locator("#w-secret-err")).to_be_visible()
    expect(page.locator(".notice.bad")).to_contain_text("wecom webhooks have no secret")
    assert page.locator("#w-secret").get_attribute("aria-invalid") == "true"
    assert api.get("/webhooks").json()["items"] == before


# --- the "Done when", as a first-time operator ----------------------------------------

@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`livecode serve` on a new data directory (its own embedded redis-server), as the
    README's quick start runs it; yields its address and the admin key it printed."""
    port = free_port()
    env = {**os.environ, "LIVECODE_SCHEDULER": "true", "LIVECODE_LOG_LEVEL": "warning"}
    env.pop("LIVECODE_REDIS_URL", None)
    cli = Path(sys.executable).with_name("livecode")
    proc = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=tmp_path)
    try:
        key = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while not key:
            assert time.monotonic() < deadline, "serve printed no admin key"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "serve ended"
            found = re.search(r"admin API key \(shown once, store it now\): (lc_\S+)", line)
            key = found.group(1) if found else ""
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(base), "serve did not become ready", 60)
        yield base, key
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.timeout(600)
def test_first_time_operator_in_chinese_on_a_phone(
    fresh_service: tuple[str, str], tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    base, key = fresh_service
    page, watch = open_page(locale="zh-CN", width=390)

    def look(name: str) -> None:
        """Every page of the walk: no sideways scrolling, no serious axe violation, no
        console error or CSP violation so far; screenshots at both widths."""
        shoot(page, f"walk-{name}-zh")
        watch.check()

    # 1. the sign-in page says where the key comes from
    page.goto(base + "/console")
    expect(page.locator("h1")).to_have_text("登录活码控制台")
    help_box = page.locator(".first-time")
    expect(help_box).to_contain_text("livecode serve")
    expect(help_box).to_contain_text("livecode keys create --scope admin")
    look("signin")
    page.fill("#key", key)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("h1")).to_have_text("活码")
    look("overview-empty")

    # 2. a campaign: a live code in Shanghai time, three WeChat group codes from screenshots
    page.get_by_role("link", name="创建第一个活码").click()
    page.fill("#p-id", "spring-camp")
    page.fill("#p-name", "春季训练营")
    page.select_option("#p-tz", "Asia/Shanghai")
    look("new")
    page.get_by_role("button", name="创建").click()
    expect(page.locator(".notice.ok")).to_have_text("活码已创建。请在下方添加群码。")
    shots = []
    for i in range(3):
        f = tmp_path / f"微信群{i + 1}.png"
        f.write_bytes(qr_png(f"https://weixin.qq.com/g/SpringCamp{i + 1:04d}"))
        shots.append(str(f))
    page.fill("#up-capacity", "3")
    page.set_input_files("#files", shots)
    expect(page.locator("#upload-results li.ok")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#group-rows tr")).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#gexp-g1")).to_contain_text("7天后")
    look("pool")

    # 3. its poster, printed: the PDF's code is the scan link
    page.get_by_role("link", name="海报").click()
    expect(page.locator(".notice.bad")).to_contain_text("手机无法打开")  # a local address
    look("poster")
    with page.expect_download() as info:
        page.locator(".poster").first.get_by_role("link", name="PDF 10 厘米").click()
    (scan_url,) = _decode_pdf(Path(info.value.path()), tmp_path)
    assert scan_url == f"{base}/s/spring-camp"

    # 4. watch it fill: nine people scan the poster; the page follows without a reload
    page.get_by_role("link", name="群码").click()
    page.evaluate("window.__sameDocument = true")
    for i in range(9):
        answer = httpx.get(scan_url, follow_redirects=False, timeout=10)
        assert answer.status_code == 200 and "weixin.qq.com/g/SpringCamp" in answer.text
        if i == 2:
            expect(page.locator("#gfill-g1")).to_contain_text("满员", timeout=WAIT_MS)
    expect(page.locator("#pool-stats .alert").first).to_contain_text("已满员", timeout=WAIT_MS)
    for gid in ("g1", "g2", "g3"):
        expect(page.locator(f"#gfill-{gid} .count")).to_have_text("3 / 3")
    # a tenth finds no room: the fallback page, counted
    assert "weixin.qq.com/g/" not in httpx.get(scan_url, timeout=10).text
    expect(page.locator("#pool-stats .scans .sub")).to_have_text("进入兜底 1", timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True
    look("pool-full")
    page.get_by_role("link", name="统计").click()
    expect(page.locator("#chart canvas")).to_have_count(1)
    expect(page.locator(".figures.totals dd[data-key=scans]")).to_have_text("10")
    expect(page.locator(".figures.totals dd[data-key=fallback]")).to_have_text("1")
    look("stats")
    page.get_by_role("link", name="事件").first.click()
    expect(page.locator("#event-list li[data-type='group.full']")).to_have_count(3)
    expect(page.locator("#event-list li[data-type='pool.exhausted']")).to_have_count(1)
    look("events")
    page.goto(base + "/console")
    expect(page.locator(".pool-card").first.locator(".alert").first).to_have_attribute(
        "data-kind", "exhausted")
    look("overview")


# --- the README's pictures ------------------------------------------------------------------------

def test_screenshots_for_the_readme(
    make_redis: Callable[..., RedisProcess], open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    """A few campaigns in full swing, in Chinese, on a service of their own (the overview
    shows only them): build/screenshots/docs-overview-zh.png (desktop) and
    docs-pool-zh-phone.png are what docs/ shows (copied by hand when they improve)."""
    own = make_redis(appendonly=False)
    _, admin_key = make_key(own.url, "admin", "ops phone")
    with running_app(own.url) as server, httpx.Client(
            base_url=server + "/api/v1", timeout=10,
            headers={"Authorization": f"Bearer {admin_key}"}) as api:
        _readme_pictures(server, api, admin_key, open_page)


def _readme_pictures(server: str, api: httpx.Client, admin_key: str,
                     open_page: Callable[..., tuple[Page, Watch]]) -> None:
    wechat = "https://weixin.qq.com/g/"
    make_pool(api, "spring-camp", [
        {"name": f"春季训练营 {i}群", "url": f"{wechat}SpringDocs{i:04d}", "capacity": 200,
         "mode": "page", "expires_at": in_hours(24 * 6)} for i in (1, 2, 3)],
        name="春季训练营", timezone="Asia/Shanghai")
    make_pool(api, "live-room", [
        {"name": "直播福利群", "url": f"{wechat}LiveRoom0001", "capacity": 40, "mode": "page"}],
        name="直播间福利", timezone="Asia/Shanghai")
    make_pool(api, "members", [
        {"name": "会员答疑 1群", "url": f"{wechat}Members0001", "capacity": 100, "mode": "page",
         "expires_at": in_hours(5)},
        {"name": "会员答疑 2群", "url": f"{wechat}Members0002", "capacity": 100, "mode": "page",
         "expires_at": in_hours(24 * 5)}],
        name="会员答疑", timezone="Asia/Shanghai")
    for i in range(260):
        scan(server, "spring-camp", ("poster-a", "poster-b", "")[i % 3])
    for _ in range(42):
        scan(server, "live-room", "live")
    for _ in range(35):
        scan(server, "members")
    page, _ = open_page(locale="zh-CN")
    signin(page, server, admin_key)
    page.goto(server + "/console")
    expect(page.locator(".pool-card").first).to_contain_text("直播间福利")
    page.screenshot(path=str(SHOTS / "docs-overview-zh.png"))
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(server + "/console/pools/spring-camp")
    expect(page.locator(".runs-out")).not_to_have_text("–")
    shoot(page, "docs-pool-zh")
    page.screenshot(path=str(SHOTS / "docs-pool-zh-phone.png"), full_page=True)
    page.goto(server + "/console/pools/spring-camp/stats?range=24h&view=channels")
    expect(page.locator("#chart canvas")).to_have_count(1)
    page.screenshot(path=str(SHOTS / "docs-stats-zh-phone.png"), full_page=True)
