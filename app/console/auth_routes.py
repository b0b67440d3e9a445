"""Sign in with an API key, sign out, and the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from app.console.web import (
    BASE,
    LANG_COOKIE,
    SESSION_COOKIE,
    ConsoleError,
    ConsoleRoute,
    ReadCtx,
    gettext_for,
    is_https,
    locale_of,
    page,
    redirect,
    runtime,
    safe_next,
    same_origin,
    sessions,
    throttle,
)
from app.i18n import LOCALES

router = APIRouter(prefix=BASE, route_class=ConsoleRoute, include_in_schema=False)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/signin")
async def signin_form(request: Request, next: str = BASE, out: int = 0) -> Response:
    return page(request, "signin.html", next=safe_next(next), error=None, signed_out=bool(out))


@router.post("/signin")
async def signin(
    request: Request,
    key: Annotated[str, Form(max_length=300)] = "",
    next: Annotated[str, Form(max_length=2000)] = BASE,
) -> Response:
    _ = gettext_for(locale_of(request))
    if not same_origin(request):
        raise ConsoleError(403, _("Request refused"),
                           _("Sign in from the console's own sign-in page."))
    client = _client(request)
    limiter = throttle(request)
    wait_s = await limiter.blocked_for(client)
    if wait_s:
        minutes = max(1, -(-wait_s // 60))
        return page(request, "signin.html", 429, next=safe_next(next), signed_out=False,
                    error=_("Too many failed attempts. Try again in %(minutes)s min.")
                    % {"minutes": minutes},
                    headers={"Retry-After": str(wait_s)})
    api_key = await runtime(request).apikeys.verify(key.strip())
    if api_key is None:
        await limiter.failed(client)
        return page(request, "signin.html", 401, next=safe_next(next), signed_out=False,
                    error=_("This API key is not valid."))
    store = sessions(request)
    await store.close(request.cookies.get(SESSION_COOKIE))  # a sign-in never keeps an old session
    token = await store.open(api_key)
    response = redirect(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE, token, max_age=runtime(request).settings.console_session_max_s,
        path=BASE, secure=is_https(request), httponly=True, samesite="strict",
    )
    return response


@router.post("/signout")
async def signout(ctx: ReadCtx) -> Response:
    await sessions(ctx.request).close(ctx.request.cookies.get(SESSION_COOKIE))
    response = redirect(f"{BASE}/signin?out=1")
    response.delete_cookie(SESSION_COOKIE, path=BASE, secure=is_https(ctx.request),
                           httponly=True, samesite="strict")
    return response


@router.get("/lang")
async def set_language(request: Request, to: str = "en", next: str = BASE) -> Response:
    """Only the language of the pages: a cookie, no stored state."""
    response = redirect(safe_next(next))
    if to in LOCALES:
        response.set_cookie(LANG_COOKIE, to, max_age=400 * 24 * 3600, path=BASE,
                            secure=is_https(request), samesite="lax")
    return response
