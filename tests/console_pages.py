"""What the console's browser tests share: Debian's headless Chromium (Playwright), pages that
record console errors and CSP violations, axe-core, screenshots at 1280 and 390 px with the
no-sideways-scrolling check, and the operator's usual steps (sign in, create a pool, upload QR
screenshots, scan)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import segno

from app.store import keys

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

# Not skipped when Chromium is missing: .ci/run installs it, and a console nobody drove is
# a console nobody tested.

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
WIDTHS = (1280, 390)
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Watch:
    """What went wrong in the page: console errors, uncaught exceptions, CSP violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[str] = []

    def check(self) -> None:
        left = [e for e in self.errors if not any(a in e for a in self.allowed)]
        assert not left, left


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., tuple[Page, Watch]]]:
    contexts: list[tuple[BrowserContext, Watch]] = []

    def make(locale: str = "en-US", width: int = 1280,
             user_agent: str | None = None) -> tuple[Page, Watch]:
        """`user_agent`: a person's browser; headless Chromium's own is taken for a link
        preview by the scan path, which then shows its neutral page."""
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900},
            extra_http_headers={"Accept-Language": locale}, accept_downloads=True,
            user_agent=user_agent,
        )
        # init scripts run before the page's own and are not subject to its CSP
        context.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI"
            " + ' at ' + e.sourceFile + ':' + e.lineNumber + ':' + e.columnNumber));"
        )
        context.add_init_script(path=str(AXE))
        watch = Watch()
        page = context.new_page()
        page.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: watch.errors.append(f"pageerror: {exc}"))
        page.on("response", lambda resp: watch.errors.append(f"{resp.status} {resp.url}")
                if resp.status >= 400 and resp.status not in (401, 403, 429) else None)
        contexts.append((context, watch))
        return page, watch

    yield make
    for context, watch in contexts:
        context.close()
        watch.check()


def signin(page: Page, base: str, key: str) -> None:
    page.goto(base + "/console")
    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page.locator("h1").first).not_to_have_text(re.compile("Sign in|登录"), timeout=WAIT_MS)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        """() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
             .filter(v => v.impact === 'serious' || v.impact === 'critical')
             .map(v => ({id: v.id, impact: v.impact,
                         nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))})))"""
    )
    return result


def shoot(page: Page, name: str) -> None:
    """A full-page screenshot at each width; on each: no horizontal scrolling, no serious
    accessibility violation."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or {"width": 1280, "height": 900}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)  # one layout pass after the resize
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        assert axe_violations(page) == [], f"{name} at {width}px"
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(original)


def qr_png(data: str) -> bytes:
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def scan(base: str, pool_id: str, ch: str = "") -> httpx.Response:
    """One scan of the poster by a new visitor (a fresh client: no cookie)."""
    suffix = f"?ch={ch}" if ch else ""
    return httpx.get(f"{base}/s/{pool_id}{suffix}", follow_redirects=False, timeout=10)


def create_pool(page: Page, base: str, pool_id: str, name: str) -> None:
    page.goto(base + "/console/pools/new")
    page.fill("#p-id", pool_id)
    page.fill("#p-name", name)
    page.click("form.pool-form button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/console/pools/{pool_id}\?done=created"),
                             timeout=WAIT_MS)


def upload_groups(page: Page, tmp_path: Path, capacity: int, urls: list[str]) -> None:
    files = []
    for i, url in enumerate(urls):
        f = tmp_path / f"group-{i + 1}.png"
        f.write_bytes(qr_png(url))
        files.append(str(f))
    page.fill("#up-capacity", str(capacity))
    page.set_input_files("#files", files)
    expect(page.locator("#upload-results li.ok")).to_have_count(len(urls), timeout=WAIT_MS)


def stored(r: redis.Redis, pool_id: str, field: str) -> str | None:
    value = r.hget(keys.pool(pool_id), field)
    return value.decode() if value else None


def snapshot(r: redis.Redis) -> dict[bytes, Any]:
    """Every key but the sessions and the keys' last-use stamps, to prove nothing changed."""
    out: dict[bytes, Any] = {}
    for key in r.scan_iter(count=1000):
        if key.startswith(keys.CONSOLE_PREFIX.encode()):
            continue
        kind = r.type(key).decode()
        if kind == "hash":
            value = r.hgetall(key)
            value.pop(b"last_used", None)
            out[key] = value
        elif kind == "string":
            out[key] = r.get(key)
        elif kind == "zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = r.smembers(key)
        else:
            out[key] = kind
    return out


