"""/docs in real headless Chromium against a real `livecode serve`: Swagger UI renders the API's
operations from assets the server itself serves, with nothing fetched from anywhere else, no
console error and no Content-Security-Policy violation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import ConsoleMessage, Request, Route

from tests.browser import chromium
from tests.test_serve import serve

pytestmark = pytest.mark.slow

# Collects the page's CSP violations; injected by the browser, so the page's policy allows it.
_CSP_SPY = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__cspViolations.push(
    e.violatedDirective + " " + e.blockedURI));
"""


async def test_docs_render_offline_from_the_servers_own_assets(
    redis_url: str, tmp_path: Path
) -> None:
    with serve(env={"LIVECODE_REDIS_URL": redis_url}, cwd=tmp_path) as base:
        async with httpx.AsyncClient(timeout=10) as client:
            head = await client.get(f"{base}/docs")
            assert head.status_code == 200
            policy = head.headers.get("content-security-policy", "")
            assert "unsafe-inline" not in policy and "http" not in policy, policy
            assert "script-src 'self' 'sha256-" in policy, policy
            assert (await client.get(f"{base}/redoc")).status_code == 404

        requests: list[str] = []
        elsewhere: list[str] = []
        errors: list[str] = []

        async def only_local(route: Route) -> None:
            if route.request.url.startswith(base + "/"):
                await route.continue_()
            else:
                elsewhere.append(route.request.url)
                await route.abort()

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning") and "DevTools" not in message.text:
                errors.append(f"{message.type}: {message.text}")

        def on_request(request: Request) -> None:
            requests.append(request.url)

        async with chromium() as browser:
            page = await browser.new_page()
            await page.add_init_script(_CSP_SPY)
            await page.route("**/*", only_local)
            page.on("request", on_request)
            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            await page.goto(f"{base}/docs", wait_until="load")
            pools = page.locator('.opblock-summary-path[data-path="/api/v1/pools"]')
            try:
                await pools.first.wait_for(timeout=20_000)
                rendered = (await pools.first.inner_text()).replace("\u200b", "")
                operations = await page.locator(".opblock").count()
            except Exception as exc:  # report what went wrong below, with the page's evidence
                rendered, operations = f"not rendered: {exc}", 0
            await page.wait_for_load_state("networkidle")
            violations = await page.evaluate("window.__cspViolations")

    assert elsewhere == [], f"requests that left the server: {elsewhere}"
    assert all(url.startswith(base + "/") for url in requests), requests
    assert f"{base}/docs/assets/swagger-ui-bundle.js" in requests
    assert f"{base}/openapi.json" in requests
    assert violations == [], violations
    assert errors == [], errors
    assert rendered == "/api/v1/pools"
    assert operations >= 10  # every operation of the API is listed


def test_assets_ship_with_their_licence() -> None:
    swagger = Path(__file__).resolve().parent.parent / "app" / "static" / "swagger"
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE", "README.md"} <= {
        p.name for p in swagger.iterdir()}
    assert "Apache License" in (swagger / "LICENSE").read_text()
    assert "5.36.0" in (swagger / "README.md").read_text()
