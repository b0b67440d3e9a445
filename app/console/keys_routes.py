"""API keys (admin only): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.console.web import BASE, AdminCtx, ConsoleRoute, redirect
from app.errors import LivecodeError

router = APIRouter(prefix=BASE + "/keys", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
async def keys_page(ctx: AdminCtx, done: str = "", new: str = "") -> Response:
    secret = await ctx.revealed("key", new) if new else None
    keys = await ctx.rt.apikeys.list()
    public = next((k for k in keys if k.id == new), None) if secret else None
    created = {"public": public, "key": secret} if public else None
    return ctx.page("keys.html", active="keys", keys=keys, created=created, error="",
                    done=done)


@router.post("")
async def create_key(ctx: AdminCtx) -> Response:
    form = await ctx.request.form()
    scope = str(form.get("scope") or "read")
    name = str(form.get("name") or "").strip()
    try:
        public, key = await ctx.rt.apikeys.create(scope, name)  # type: ignore[arg-type]
    except LivecodeError as exc:
        return ctx.page("keys.html", 422, active="keys", keys=await ctx.rt.apikeys.list(),
                        created=None, error=exc.message, done="")
    # shown once, on the page this redirects to (reloading that page posts nothing again);
    # Redis keeps only the key's SHA-256
    await ctx.reveal_next("key", public.id, key)
    return redirect(f"{BASE}/keys?new={public.id}")


@router.get("/{key_id}/revoke")
async def revoke_confirm(ctx: AdminCtx, key_id: str) -> Response:
    key = await ctx.rt.apikeys.get(key_id)
    _ = ctx._
    own = key.id == ctx.session.key_id
    return ctx.page(
        "confirm.html", active="keys",
        title=_("Revoke the API key %(name)s?") % {"name": key.name or key.id},
        message=(_("Everything using it stops working at once, and so do its console "
                   "sessions.") + (" " + _("This is the key you are signed in with: you will "
                                          "be signed out.") if own else "")),
        action=f"{BASE}/keys/{key.id}/revoke", button=_("Revoke the key"),
        back=f"{BASE}/keys", confirm_text="",
    )


@router.post("/{key_id}/revoke")
async def revoke(ctx: AdminCtx, key_id: str) -> Response:
    await ctx.rt.apikeys.revoke(key_id)
    return redirect(f"{BASE}/keys?done=revoked")
