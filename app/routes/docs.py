"""/docs: Swagger UI from files shipped in the package (app/static/swagger, see its README), so
the page works offline and loads nothing from a CDN, under a Content-Security-Policy of 'self'.

FastAPI's page starts Swagger UI with an inline script; the policy allows that one script by its
SHA-256 (computed from the page as served), not with 'unsafe-inline'. ReDoc is off: it would be
another bundle to ship for the same OpenAPI document.
"""

from __future__ import annotations

import re
from base64 import b64encode
from hashlib import sha256
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"
_SWAGGER_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# data: only for images: swagger-ui.css draws its icons as data: URIs (no request is made)
_POLICY = ("default-src 'none'; script-src 'self' {scripts}; style-src 'self'; "
           "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
           "form-action 'none'; frame-ancestors 'none'")


def install(api: FastAPI) -> None:
    """The docs page and its assets; FastAPI's own /docs and /redoc must be off (None)."""
    api.mount(ASSETS, StaticFiles(directory=_SWAGGER_DIR), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{api.openapi_url}",
            title=f"{api.title} - API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # no badge fetched from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )
        html = bytes(page.body).decode()
        hashes = " ".join(
            f"'sha256-{b64encode(sha256(script.encode()).digest()).decode()}'"
            for script in _INLINE_SCRIPT.findall(html)
        )
        return HTMLResponse(html, headers={
            "Content-Security-Policy": _POLICY.format(scripts=hashes),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        })
