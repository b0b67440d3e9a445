"""What every console page shares: the route class that renders errors as pages and puts the
security headers on every response, the signed-in context (`ReadCtx`, `AdminCtx`) with its CSRF
and same-origin checks, the language, and rendering."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, cast
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from redis.exceptions import RedisError

from app import audit
from app.console.render import render
from app.console.sessions import Session, SessionStore, SigninThrottle
from app.errors import LivecodeError
from app.i18n import LOCALES, negotiate, translations
from app.runtime import Runtime
from app.store.apikeys import ApiKeyStore

SESSION_COOKIE = "lc_console"
LANG_COOKIE = "lc_lang"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
BASE = "/console"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SignInRequired(Exception):
    """No live session: the page sends the browser to the sign-in form."""


class ConsoleError(Exception):
    """A page-level refusal: rendered as an error page with this status."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message


def locale_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    return negotiate(request.headers.get("accept-language"))


def gettext_for(locale: str) -> Callable[[str], str]:
    return translations("console", locale).gettext


def runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def sessions(request: Request) -> SessionStore:
    rt = runtime(request)
    store = getattr(request.app.state, "console_sessions", None)
    if store is None or store.r is not rt.redis:
        store = SessionStore(
            rt.redis,
            idle_s=rt.settings.console_idle_timeout_s,
            max_s=rt.settings.console_session_max_s,
        )
        request.app.state.console_sessions = store
    return cast(SessionStore, store)


def throttle(request: Request) -> SigninThrottle:
    s = runtime(request).settings
    return SigninThrottle(
        runtime(request).redis, limit=s.console_signin_failures, window_s=s.console_signin_window_s
    )


def is_https(request: Request) -> bool:
    public = runtime(request).settings.public_url or ""
    return public.startswith("https://") or request.url.scheme == "https"


def safe_next(target: str | None) -> str:
    """A redirect target inside the console, never another site (`//evil`, `/\\evil`)."""
    if (
        target
        and target.startswith(BASE)
        and not target.startswith("//")
        and "\\" not in target
        and all(32 < ord(c) < 127 for c in target)
    ):
        return target
    return BASE


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request) -> bool:
    """The request comes from one of our own pages: its Origin (or, when a browser sends none,
    its Referer) is this server's address or the public URL's."""
    ours = {_origin(str(request.base_url))}
    public = runtime(request).settings.public_url
    if public:
        ours.add(_origin(public))
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() in ours
    referer = request.headers.get("referer")
    return referer is not None and _origin(referer) in ours


@dataclass
class Ctx:
    """One signed-in request: who, in which language, and how to answer."""

    request: Request
    session: Session
    locale: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def rt(self) -> Runtime:
        return runtime(self.request)

    @property
    def _(self) -> Callable[[str], str]:
        return gettext_for(self.locale)

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.html(template, **context), status_code=status)

    def html(self, template: str, **context: Any) -> str:
        return page_html(self.request, template, session=self.session, locale=self.locale,
                         now=self.now, **context)

    async def reveal_next(self, what: str, ref: str, secret: str) -> None:
        """Show `secret` once, on this session's next page about `ref` (post, redirect, get)."""
        await sessions(self.request).reveal_next(self.request.cookies.get(SESSION_COOKIE),
                                                 what, ref, secret)

    async def revealed(self, what: str, ref: str) -> str | None:
        return await sessions(self.request).revealed(self.request.cookies.get(SESSION_COOKIE),
                                                     what, ref)

    def require_admin(self) -> None:
        if not self.session.admin:
            raise ConsoleError(403, self._("Read-only access"),
                               self._("This API key may only read. Sign in with an admin key "
                                      "to make changes."))
        audit.actor.set(self.session.key_id)


def page(
    request: Request,
    template: str,
    status: int = 200,
    *,
    session: Session | None = None,
    locale: str | None = None,
    now: datetime | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = page_html(request, template, session=session, locale=locale, now=now, **context)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def page_html(
    request: Request,
    template: str,
    *,
    session: Session | None = None,
    locale: str | None = None,
    now: datetime | None = None,
    **context: Any,
) -> str:
    return render(
        template,
        locale or locale_of(request),
        request=request,
        session=session,
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        now=now or datetime.now(UTC),
        csrf_field=CSRF_FIELD,
        **context,
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _session(request: Request, *, touch: bool) -> Session:
    token = request.cookies.get(SESSION_COOKIE)
    store = sessions(request)
    session = await store.get(token, touch=touch)
    if session is None:
        raise SignInRequired
    # the API key is read again on every request: a revoked key ends its sessions here
    apikeys: ApiKeyStore = runtime(request).apikeys
    try:
        key = await apikeys.get(session.key_id)
    except LivecodeError:
        await store.close(token)
        raise SignInRequired from None
    if key.scope != session.scope:
        await store.close(token)
        raise SignInRequired
    return session


async def _check_change(request: Request, session: Session) -> None:
    """Every unsafe request: same origin, then the session's CSRF token (header or form)."""
    _ = gettext_for(locale_of(request))
    refused = ConsoleError(
        403, _("Request refused"),
        _("This change did not come from a console page. Reload the page and try again."),
    )
    if not same_origin(request):
        raise refused
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form(max_files=20, max_fields=200)
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not session.csrf_ok(presented):
        raise refused


async def read_ctx(request: Request) -> Ctx:
    session = await _session(request, touch=True)
    if request.method not in _SAFE_METHODS:
        await _check_change(request, session)
    return Ctx(request, session, locale_of(request))


async def poll_ctx(request: Request) -> Ctx:
    """Live fragments: signed in, but polling does not count as activity."""
    return Ctx(request, await _session(request, touch=False), locale_of(request))


async def admin_ctx(request: Request) -> Ctx:
    ctx = await read_ctx(request)
    ctx.require_admin()
    return ctx


ReadCtx = Annotated[Ctx, Depends(read_ctx)]
PollCtx = Annotated[Ctx, Depends(poll_ctx)]
AdminCtx = Annotated[Ctx, Depends(admin_ctx)]


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    response = page(request, "error.html", status, title=title, message=message)
    if status == 503:
        response.headers["Retry-After"] = "2"
    return response


def unavailable_page(request: Request) -> Response:
    """The console's 503: Redis did not answer (or not in time)."""
    _ = gettext_for(locale_of(request))
    return secure(_error_page(request, 503, _("The store is unavailable"),
                              _("Redis did not answer. Try again in a moment.")))


def _to_signin(request: Request) -> Response:
    if "hx-request" in request.headers:  # a poll or a fragment: the page the user is on
        back = urlsplit(request.headers.get("hx-current-url", "")).path
    else:
        back = request.url.path if request.method == "GET" else BASE
    target = f"{BASE}/signin?next=" + quote(safe_next(back), safe="")
    if "hx-request" in request.headers:
        return Response(status_code=204, headers={"HX-Redirect": target})
    return redirect(target)


class ConsoleRoute(APIRoute):
    """Console routes answer with HTML pages, never the API's JSON errors, and every answer
    carries the console's security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            _ = gettext_for(locale_of(request))
            try:
                response = await handler(request)
            except SignInRequired:
                response = _to_signin(request)
            except ConsoleError as exc:
                response = _error_page(request, exc.status, exc.title, exc.message)
            except LivecodeError as exc:
                title = {404: _("Not found"), 409: _("Conflict"), 413: _("Too large")}.get(
                    exc.status, _("Request refused"))
                response = _error_page(request, exc.status, title, exc.message)
            except RequestValidationError:
                response = _error_page(request, 404, _("Not found"), "")
            except (RedisError, OSError):
                response = unavailable_page(request)
            return secure(response)

        return run
