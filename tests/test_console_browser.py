"""The operator console in a real browser: Debian's headless Chromium driven by Playwright,
against the app served over real HTTP on 127.0.0.1 and the fixtures' real redis-server.

Every page is also screenshotted at 1280 and 390 px, in English and zh-CN, into
build/screenshots/, and checked with axe-core (no serious or critical violation)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import zxingcpp
from PIL import Image

from app.embedded import RedisProcess, free_port
from app.store import keys
from tests.console_pages import (
    WAIT_MS,
    Watch,
    browser,
    create_pool,
    open_page,
    scan,
    shoot,
    signin,
    snapshot,
    stored,
    upload_groups,
)
from tests.console_server import make_key, running_app

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect  # noqa: E402

__all__ = ["browser", "open_page"]  # fixtures used by name


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_for_console(redis_server: RedisProcess) -> Iterator[str]:
    with redis_server.client() as c:
        c.flushall()
    yield redis_server.url


@pytest.fixture(scope="module")
def server(redis_for_console: str) -> Iterator[str]:
    with running_app(redis_for_console) as base:
        yield base


@pytest.fixture(scope="module")
def admin_key(redis_for_console: str) -> str:
    return make_key(redis_for_console, "admin", "browser tests")[1]


@pytest.fixture(scope="module")
def read_key(redis_for_console: str) -> str:
    return make_key(redis_for_console, "read", "viewer")[1]


@pytest.fixture
def r(redis_for_console: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_for_console) as client:
        yield client


# --- sign in -----------------------------------------------------------------------------------

def test_sign_in_refuses_a_bad_key_and_admits_a_good_one(
    server: str, admin_key: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    page, watch = open_page()
    watch.allowed.append("status of 401")  # the refused sign-in answers 401, which Chromium logs
    page.goto(server + "/console")
    expect(page).to_have_url(re.compile(r"/console/signin\?next="))
    shoot(page, "signin-en")
    page.fill("#key", "lc_00000000_" + "x" * 43)
    page.click("button[type=submit]")
    expect(page.locator("#signin-err")).to_contain_text("not valid")
    assert not [c for c in page.context.cookies() if c["name"] == "lc_console"]
    page.fill("#key", admin_key)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Live codes")
    cookie = next(c for c in page.context.cookies() if c["name"] == "lc_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"


# --- the main flow -----------------------------------------------------------------------------

def test_main_flow(
    server: str, admin_key: str, r: redis.Redis, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console")
    shoot(page, "overview-empty-en")
    page.goto(server + "/console/pools/new")
    shoot(page, "new-en")
    create_pool(page, server, "spring-camp", "Spring camp")
    assert stored(r, "spring-camp", "status") == "active"

    # two groups from QR screenshots, dropped at once: one WeChat group, one WhatsApp
    wechat = "https://weixin.qq.com/g/AbCdEfGh12345678"
    whatsapp = "https://chat.whatsapp.com/InviteCode123"
    upload_groups(page, tmp_path, 2, [wechat, whatsapp])
    expect(page.locator("#upload-results")).to_contain_text("expires in 7 days")
    rows = page.locator("#group-rows tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    expect(rows.nth(0)).to_contain_text(wechat)
    expect(rows.nth(0).locator("#gexp-g1")).to_contain_text(re.compile(r"in \d+ day"))
    expect(page.locator("#next-group")).to_contain_text("g1")
    shoot(page, "pool-en")

    # a scan through real HTTP moves the count on the page, without a reload
    page.evaluate("window.__sameDocument = true")
    assert scan(server, "spring-camp", "lobby").status_code == 200  # WeChat: the QR page
    expect(page.locator("#gfill-g1 .count")).to_have_text("1 / 2", timeout=WAIT_MS)
    expect(page.locator("#pool-stats")).to_contain_text("lobby")
    assert page.evaluate("window.__sameDocument") is True

    # fill the first group: marked full; the next visitor goes to the second
    scan(server, "spring-camp")
    expect(page.locator("#gfill-g1")).to_contain_text("Full", timeout=WAIT_MS)
    expect(page.locator("#next-group")).to_contain_text("g2", timeout=WAIT_MS)
    # fill the second: the pool is exhausted, and says so
    assert scan(server, "spring-camp").status_code == 302
    assert scan(server, "spring-camp").headers["location"] == whatsapp
    expect(page.locator("#pool-stats .a-critical")).to_contain_text("Exhausted", timeout=WAIT_MS)
    expect(page.locator("#gfill-g2")).to_contain_text("Full")
    assert page.evaluate("window.__sameDocument") is True
    shoot(page, "pool-full-en")

    # the overview lists it first, with the warning
    page.goto(server + "/console")
    first = page.locator(".pool-card").first
    expect(first).to_contain_text("Spring camp")
    expect(first).to_contain_text("Exhausted")
    shoot(page, "overview-en")

    # room again: raise the second group's capacity inline
    page.goto(server + "/console/pools/spring-camp")
    page.fill("#cap-g2", "5")
    page.locator("#g-g2 form.cap button").click()
    expect(page.locator("#gfill-g2 .count")).to_have_text("2 / 5")
    assert r.hget(keys.group("spring-camp", "g2"), "cap") == b"5"

    # reorder with the keyboard's buttons
    page.get_by_role("button", name=re.compile("Move group-2 up")).click()
    expect(page.locator("#group-rows tr").first).to_have_attribute("data-id", "g2")
    assert int(r.hget(keys.group("spring-camp", "g2"), "pos") or 0) < int(
        r.hget(keys.group("spring-camp", "g1"), "pos") or 0)

    # and by dragging a row (SortableJS): the order is saved without a reload
    page.evaluate("window.__sameDocument = true")
    page.locator("#g-g1 .drag").drag_to(page.locator("#g-g2"), target_position={"x": 20, "y": 5})
    expect(page.locator("#group-rows tr").first).to_have_attribute("data-id", "g1")
    deadline = time.monotonic() + 10
    while int(r.hget(keys.group("spring-camp", "g1"), "pos") or 0) > int(
            r.hget(keys.group("spring-camp", "g2"), "pos") or 0):
        assert time.monotonic() < deadline, "the dragged order was not saved"
        time.sleep(0.05)
    assert page.evaluate("window.__sameDocument") is True

    # the poster: a loopback warning, and a PNG that decodes to the scan URL
    page.get_by_role("link", name="Poster").click()
    expect(page.locator(".notice.bad")).to_contain_text("LIVECODE_PUBLIC_URL")
    page.fill("#channels", "lobby, window-2")
    page.get_by_role("button", name="Show the codes").click()
    expect(page.locator(".poster")).to_have_count(3)
    shoot(page, "poster-en")
    with page.expect_download() as info:
        page.locator(".poster").nth(1).get_by_role("link", name="PNG 10 cm").click()
    path = info.value.path()
    image = Image.open(path)
    assert 1000 <= image.width <= 1400  # about 10 cm at 300 dpi
    decoded = zxingcpp.read_barcodes(image)
    assert [c.text for c in decoded] == [f"{server}/s/spring-camp?ch=lobby"]
    with page.expect_download() as info:
        page.locator(".poster").first.get_by_role("link", name="SVG 5 cm").click()
    assert b"<svg" in Path(info.value.path()).read_bytes()

    # pause and resume
    page.goto(server + "/console/pools/spring-camp")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#pool-head")).to_contain_text("Paused")
    assert stored(r, "spring-camp", "status") == "paused"
    assert "paused" in scan(server, "spring-camp").text
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#pool-head")).to_contain_text("Active")
    assert stored(r, "spring-camp", "status") == "active"

    # settings, then delete a group and the pool, each with a confirmation
    page.get_by_role("link", name="Settings").click()
    page.check("input[name=fallback_kind][value=message]")
    page.fill("#p-fb-msg", "All full, add our assistant")
    page.fill("#p-fb-contact", "https://work.weixin.qq.com/u/abc")
    shoot(page, "settings-en")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice.ok")).to_have_text("Saved.")
    assert stored(r, "spring-camp", "fb_msg") == "All full, add our assistant"
    page.goto(server + "/console/pools/spring-camp/groups/g1/delete")
    shoot(page, "confirm-en")
    page.get_by_role("button", name="Delete the group code").click()
    expect(page.locator("#group-rows tr")).to_have_count(1)
    assert not r.exists(keys.group("spring-camp", "g1"))
    page.goto(server + "/console/pools/spring-camp/delete")
    page.fill("#confirm", "spring-camp")
    page.get_by_role("button", name="Delete for good").click()
    expect(page).to_have_url(re.compile(r"/console\?done=deleted"))
    assert not r.exists(keys.pool("spring-camp"))


def test_api_keys_page(
    server: str, admin_key: str, r: redis.Redis, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    page, _ = open_page()
    signin(page, server, admin_key)
    page.goto(server + "/console/keys")
    page.fill("#k-name", "phone")
    page.select_option("#k-scope", "read")
    page.get_by_role("button", name="Create the key").click()
    new_key = page.locator("#new-key").input_value()
    assert new_key.startswith("lc_")
    shoot(page, "keys-en")
    # the key came on the page the post redirected to: reloading it creates nothing more
    count = len(list(r.scan_iter(match=keys.apikey("*"))))
    page.reload()
    assert new_key not in page.content()
    assert len(list(r.scan_iter(match=keys.apikey("*")))) == count
    key_id = new_key.split("_")[1]
    assert r.exists(keys.apikey(key_id))
    page.goto(server + f"/console/keys/{key_id}/revoke")
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator(".notice.ok")).to_contain_text("revoked")
    assert not r.exists(keys.apikey(key_id))
    assert new_key not in page.content()  # shown once only


# --- who may change what -----------------------------------------------------------------------

def _seed_pool(page: Page, base: str, pool_id: str, tmp_path: Path) -> None:
    create_pool(page, base, pool_id, pool_id)
    upload_groups(page, tmp_path, 5, [f"https://t.me/+{pool_id}"])


def test_a_read_key_sees_no_change_controls_and_cannot_change(
    server: str, admin_key: str, read_key: str, r: redis.Redis, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    admin, _ = open_page()
    signin(admin, server, admin_key)
    _seed_pool(admin, server, "read-only", tmp_path)

    page, watch = open_page()
    signin(page, server, read_key)
    page.goto(server + "/console/pools/read-only")
    expect(page.locator(".readonly-banner")).to_be_visible()
    expect(page.locator("#group-rows tr")).to_have_count(1)
    # the only form that posts is signing out
    assert page.locator("form[method=post]").count() == 1
    assert page.locator("form[action='/console/signout']").count() == 1
    assert page.get_by_role("button", name="Pause").count() == 0
    assert page.locator("#upload-form").count() == 0
    assert page.locator("a[href$='/delete'], a[href$='/reset']").count() == 0
    shoot(page, "pool-readonly-en")
    page.goto(server + "/console/pools/read-only/edit")
    assert page.locator("form.pool-form fieldset[disabled]").count() == 5
    assert page.locator("form.pool-form button[type=submit]").count() == 0

    # a forged change with this session and its own valid CSRF token: refused, nothing changes
    page.goto(server + "/console/pools/read-only")
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    before = snapshot(r)
    for path, form in (("/pause", {}), ("/delete", {"confirm": "read-only"}),
                       ("/groups/g1/reset", {}), ("/groups", {"url": "https://t.me/+x"})):
        answer = page.request.post(server + "/console/pools/read-only" + path,
                                   form={"csrf": token or "", **form},
                                   headers={"Origin": server}, max_redirects=0)
        assert answer.status == 403, path
        assert "Read-only" in answer.text()
    answer = page.request.post(server + "/console/keys", form={"csrf": token or "",
                                                               "scope": "admin"},
                               headers={"Origin": server}, max_redirects=0)
    assert answer.status == 403
    assert snapshot(r) == before
    watch.check()


class _Attacker(BaseHTTPRequestHandler):
    """Another origin on this machine whose page posts a form to the console."""

    target = ""

    def do_GET(self) -> None:
        html = (f'<!doctype html><form method="post" action="{self.target}">'
                '<input name="csrf" value="guessed"><button id="go">go</button></form>')
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(html.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_cross_site_changes_are_refused(
    server: str, admin_key: str, r: redis.Redis, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    page, watch = open_page()
    signin(page, server, admin_key)
    _seed_pool(page, server, "csrf-target", tmp_path)
    token = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "lc_console")
    target = server + "/console/pools/csrf-target/pause"
    before = snapshot(r)

    # a page of another origin (same host, other port: the SameSite cookie still goes along)
    _Attacker.target = target
    evil = HTTPServer(("127.0.0.1", free_port()), _Attacker)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        watch.allowed.append("status of 403")
        page.goto(f"http://127.0.0.1:{evil.server_port}/")
        with page.expect_navigation():
            page.click("#go")
        expect(page.locator("h1")).to_have_text("Request refused")
        shoot(page, "refused-en")
    finally:
        evil.shutdown()
        evil.server_close()

    cookies = {"lc_console": session}
    with httpx.Client(cookies=cookies, follow_redirects=False, timeout=10) as c:
        # the right token but a foreign Origin
        assert c.post(target, data={"csrf": token},
                      headers={"Origin": "https://evil.example"}).status_code == 403
        # the right token, no Origin and no Referer
        assert c.post(target, data={"csrf": token}).status_code == 403
        # a foreign Referer and no Origin
        assert c.post(target, data={"csrf": token},
                      headers={"Referer": "https://evil.example/x"}).status_code == 403
        # same origin but no token, or a wrong one (form or header)
        assert c.post(target, headers={"Origin": server}).status_code == 403
        assert c.post(target, data={"csrf": "nope"}, headers={"Origin": server}).status_code == 403
        assert c.post(target, headers={"Origin": server,
                                       "X-CSRF-Token": "nope"}).status_code == 403
        assert snapshot(r) == before
        assert stored(r, "csrf-target", "status") == "active"
        # and the same request done right is accepted: the checks above are what refused
        ok = c.post(target, data={"csrf": token}, headers={"Origin": server})
        assert ok.status_code == 303
    assert stored(r, "csrf-target", "status") == "paused"


# --- sessions end --------------------------------------------------------------------------------

def test_sign_out_ends_the_session(
    server: str, admin_key: str, r: redis.Redis, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    page, _ = open_page()
    signin(page, server, admin_key)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "lc_console")
    sessions_before = list(r.scan_iter(match=keys.CONSOLE_PREFIX + "s:*"))
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator(".notice.ok")).to_contain_text("signed out")
    assert len(list(r.scan_iter(match=keys.CONSOLE_PREFIX + "s:*"))) == len(sessions_before) - 1
    old = httpx.get(server + "/console", cookies={"lc_console": token}, follow_redirects=False)
    assert old.status_code == 303 and "/console/signin" in old.headers["location"]


def test_a_revoked_key_ends_its_sessions(
    server: str, redis_for_console: str, open_page: Callable[..., tuple[Page, Watch]]
) -> None:
    key_id, key = make_key(redis_for_console, "admin", "short-lived")
    page, _ = open_page()
    signin(page, server, key)
    page.goto(server + "/console/keys")
    expect(page.locator("h1")).to_have_text("API keys")
    page.goto(server + f"/console/keys/{key_id}/revoke")
    page.get_by_role("button", name="Revoke the key").click()
    expect(page).to_have_url(re.compile(r"/console/signin"))


def test_failed_sign_ins_are_throttled(redis_for_console: str, admin_key: str) -> None:
    with running_app(redis_for_console, console_signin_failures=3) as base, \
            httpx.Client(base_url=base, follow_redirects=False, timeout=10) as c:
        headers = {"Origin": base}
        with redis.Redis.from_url(redis_for_console) as r:  # earlier tests' failures
            r.delete(keys.console_signin_failures("127.0.0.1"))
        for _ in range(3):
            assert c.post("/console/signin", data={"key": "lc_bad"}, headers=headers
                          ).status_code == 401
        blocked = c.post("/console/signin", data={"key": admin_key}, headers=headers)
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
        with redis.Redis.from_url(redis_for_console) as r:
            name = keys.console_signin_failures("127.0.0.1")
            assert 0 < r.ttl(name) <= 15 * 60
            r.delete(name)  # the window over: the good key gets in
        assert c.post("/console/signin", data={"key": admin_key}, headers=headers
                      ).status_code == 303


# --- zh-CN --------------------------------------------------------------------------------------

def test_the_main_flow_in_chinese(
    server: str, admin_key: str, r: redis.Redis, tmp_path: Path,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    page, _ = open_page(locale="zh-CN")
    page.goto(server + "/console")
    expect(page.locator("h1")).to_have_text("登录活码控制台")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    shoot(page, "signin-zh")
    page.fill("#key", admin_key)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("h1")).to_have_text("活码")

    page.get_by_role("link", name="新建活码").first.click()
    shoot(page, "new-zh")
    page.fill("#p-id", "autumn-camp")
    page.fill("#p-name", "秋季训练营")
    page.get_by_role("button", name="创建").click()
    expect(page.locator(".notice.ok")).to_have_text("活码已创建。请在下方添加群码。")
    upload_groups(page, tmp_path, 3, ["https://weixin.qq.com/g/ZhCnGroup0001",
                                      "https://weixin.qq.com/g/ZhCnGroup0002"])
    expect(page.locator("#upload-results")).to_contain_text("微信群码：7 天后过期")
    expect(page.locator("#group-rows tr")).to_have_count(2, timeout=WAIT_MS)
    for _ in range(3):
        scan(server, "autumn-camp", "poster-a")
    expect(page.locator("#gfill-g1")).to_contain_text("满员", timeout=WAIT_MS)
    expect(page.locator("#pool-stats")).to_contain_text("剩余名额")
    shoot(page, "pool-zh")
    page.goto(server + "/console")
    expect(page.locator(".pool-card", has_text="秋季训练营")).to_contain_text("剩余名额")
    shoot(page, "overview-zh")
    page.goto(server + "/console/pools/autumn-camp/poster?channels=poster-a")
    expect(page.locator(".notice.bad")).to_contain_text("手机无法打开")
    shoot(page, "poster-zh")
    page.goto(server + "/console/pools/autumn-camp/edit")
    shoot(page, "settings-zh")
    page.goto(server + "/console/keys")
    shoot(page, "keys-zh")
    page.goto(server + "/console/pools/autumn-camp/groups/g1/reset")
    shoot(page, "confirm-zh")

    # switch to English; the choice sticks across pages, then back to Chinese
    page.goto(server + "/console")
    page.get_by_role("link", name="English").click()
    expect(page.locator("h1")).to_have_text("Live codes")
    page.goto(server + "/console/pools/autumn-camp")
    expect(page.locator("#groups-h")).to_have_text("Group codes")
    page.get_by_role("link", name="中文").click()
    expect(page.locator("#groups-h")).to_have_text("群码")
    page.goto(server + "/console/keys")
    expect(page.locator("h1")).to_have_text("API 密钥")

    # pause and resume, a poster downloaded and decoded, and sign out, in Chinese
    page.goto(server + "/console/pools/autumn-camp")
    page.get_by_role("button", name="暂停").click()
    expect(page.locator("#pool-head")).to_contain_text("已暂停")
    assert stored(r, "autumn-camp", "status") == "paused"
    page.get_by_role("button", name="恢复").click()
    expect(page.locator("#pool-head")).to_contain_text("进行中")
    assert stored(r, "autumn-camp", "status") == "active"
    page.get_by_role("link", name="海报").click()
    with page.expect_download() as info:
        page.locator(".poster").first.get_by_role("link", name=re.compile("^PNG 10")).click()
    decoded = zxingcpp.read_barcodes(Image.open(info.value.path()))
    assert [c.text for c in decoded] == [f"{server}/s/autumn-camp"]
    sessions = len(list(r.scan_iter(match=keys.CONSOLE_PREFIX + "s:*")))
    page.get_by_role("button", name="退出登录").click()
    expect(page.locator("h1")).to_have_text("登录活码控制台")
    assert len(list(r.scan_iter(match=keys.CONSOLE_PREFIX + "s:*"))) == sessions - 1


PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


def test_a_pool_set_up_and_steered_by_hand(
    server: str, admin_key: str, r: redis.Redis,
    open_page: Callable[..., tuple[Page, Watch]],
) -> None:
    """The controls the main flow leaves alone: strategy, QR page mode, schedule, sticky time
    and a fallback link at creation; groups added by invite link; disable, enable, reset;
    and the scan link opened from the pool page."""
    page, _ = open_page(user_agent=PHONE_UA)
    signin(page, server, admin_key)
    page.goto(server + "/console/pools/new")
    page.fill("#p-id", "by-hand")
    page.fill("#p-name", "By hand")
    page.select_option("#p-strategy", "round_robin")
    page.check("input[name=mode][value=page]")
    page.fill("#p-sticky", "2")
    page.fill("#p-from", "2020-01-01T00:00")
    page.fill("#p-until", "2040-06-30T18:30")
    page.check("input[name=fallback_kind][value=link]")
    page.fill("#p-fb-url", "https://example.com/all-full")
    page.click("form.pool-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/pools/by-hand\?done=created"),
                             timeout=WAIT_MS)
    assert stored(r, "by-hand", "strategy") == "round_robin"
    assert stored(r, "by-hand", "mode") == "page"
    assert stored(r, "by-hand", "ttl") == "7200"
    assert stored(r, "by-hand", "vf") == "1577836800000"  # 2020-01-01 00:00 UTC
    assert stored(r, "by-hand", "vu") == "2224693800000"  # 2040-06-30 18:30 UTC
    assert stored(r, "by-hand", "fb_url") == "https://example.com/all-full"

    # two groups by invite link, one place each
    for i in (1, 2):
        page.fill("#g-url", f"https://chat.whatsapp.com/ByHand{i}")
        page.fill("#g-capacity", "1")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#group-rows tr")).to_have_count(i, timeout=WAIT_MS)
    assert r.hget(keys.group("by-hand", "g2"), "url") == b"https://chat.whatsapp.com/ByHand2"

    # disabled, g1 is skipped; enabled again, it is next
    page.get_by_role("button", name="Disable g1").click()
    expect(page.get_by_role("button", name="Enable g1")).to_be_visible()
    assert r.hget(keys.group("by-hand", "g1"), "en") == b"0"
    expect(page.locator("#next-group")).to_contain_text("g2", timeout=WAIT_MS)
    page.get_by_role("button", name="Enable g1").click()
    expect(page.get_by_role("button", name="Disable g1")).to_be_visible()
    assert r.hget(keys.group("by-hand", "g1"), "en") == b"1"
    expect(page.locator("#next-group")).to_contain_text("g1", timeout=WAIT_MS)

    # the scan link, opened from the page: the QR page of g1 (page mode), which fills g1
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open the scan link in a new tab").click()
    scanned = opened.value
    scanned.wait_for_load_state()
    assert scanned.url == f"{server}/s/by-hand"
    expect(scanned.locator('a[href="https://chat.whatsapp.com/ByHand1"]')).to_have_count(1)
    scanned.close()
    expect(page.locator("#gfill-g1")).to_contain_text("Full", timeout=WAIT_MS)

    # reset, confirmed: g1 takes visitors again
    page.get_by_role("link", name="Reset count g1").click()
    page.get_by_role("button", name="Reset the count").click()
    expect(page.locator("#gfill-g1 .count")).to_have_text("0 / 1", timeout=WAIT_MS)
    assert int(r.hget(keys.group("by-hand", "g1"), "c") or 0) == 0

    # round robin: g2 is next after g1, then g1 again; then the pool is full and the next
    # visitor goes to the fallback link
    assert 'href="https://chat.whatsapp.com/ByHand2"' in scan(server, "by-hand").text
    assert 'href="https://chat.whatsapp.com/ByHand1"' in scan(server, "by-hand").text
    full = scan(server, "by-hand")
    assert full.status_code == 302
    assert full.headers["location"] == "https://example.com/all-full"
