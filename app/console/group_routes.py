"""A pool's groups: add by link or by QR screenshots, capacity, enable/disable, reset, delete,
replace a code, and order (drag and drop, or the up/down buttons)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.datastructures import UploadFile

from app import decoder, qr
from app.console.forms import add_store_error, group_values, parse_local_time, upload_fields
from app.console.nav import pool_tabs
from app.console.pool_routes import pool_context
from app.console.web import BASE, AdminCtx, ConsoleError, ConsoleRoute, Ctx, redirect
from app.deps import pool_id_or_404
from app.errors import LivecodeError, NotFound
from app.schemas import GroupUpdate

router = APIRouter(prefix=BASE + "/pools/{pool_id}/groups", route_class=ConsoleRoute,
                   include_in_schema=False)

MAX_FILES = 20


def _back(pool_id: str, done: str, group_id: str = "") -> Response:
    return redirect(f"{BASE}/pools/{pool_id}?done={done}" + (f"#g-{group_id}" if group_id else ""))


@router.post("")
async def add_by_link(ctx: AdminCtx, pool_id: str) -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id), with_groups=True)
    form = await ctx.request.form()
    group, errors = group_values(form, getattr(pool, "timezone", None), now=ctx.now)
    if group is not None:
        try:
            created = await ctx.rt.store.add_groups(pool.id, [group])
            return _back(pool.id, "added", created[0].id)
        except NotFound:
            raise
        except LivecodeError as exc:
            add_store_error(errors, exc)
    return ctx.page("pool.html", 422, active="pool", tab="groups", done="",
                    add_errors=errors, add_values={k: form.get(k) or "" for k in
                                                   ("url", "name", "capacity", "expires_at")},
                    **pool_context(ctx, pool))


@router.post("/upload")
async def upload(ctx: AdminCtx, pool_id: str) -> Response:
    """Screenshots of group QR codes, one or several: each is decoded off the event loop as the
    API's upload does, and added as its own group; each file gets its own result."""
    pool_id = pool_id_or_404(pool_id)
    await ctx.rt.store.get_pool(pool_id)
    form = await ctx.request.form(max_files=MAX_FILES, max_fields=50)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    results: list[dict[str, str]] = []
    for f in files:
        name = f.filename or "?"
        try:
            data = await f.read(qr.MAX_UPLOAD_BYTES + 1)
            group = await decoder.group_from_upload(data, upload_fields(form, name))
            created = (await ctx.rt.store.add_groups(pool_id, [group]))[0]
            results.append({"file": name, "ok": "1", "group": created.id, "url": created.url,
                            "wechat": "1" if qr.is_wechat_group_url(created.url) else ""})
        except NotFound:
            raise
        except LivecodeError as exc:
            results.append({"file": name, "ok": "", "error": exc.message, "code": exc.code})
    if not files:
        results.append({"file": "", "ok": "", "error": "", "code": "no_file"})
    fragment = "hx-request" in ctx.request.headers
    if fragment:
        return ctx.page("_upload_results.html", results=results)
    pool = await ctx.rt.store.get_pool(pool_id, with_groups=True)
    return ctx.page("pool.html", active="pool", tab="groups", done="", upload_results=results,
                    **pool_context(ctx, pool))


@router.post("/reorder")
async def reorder(ctx: AdminCtx, pool_id: str) -> Response:
    """The order after a drag: every group id once (the store refuses anything else)."""
    form = await ctx.request.form()
    ids = [str(v) for v in form.getlist("group_ids")]
    await ctx.rt.store.reorder_groups(pool_id_or_404(pool_id), ids)
    if "hx-request" in ctx.request.headers or ctx.request.headers.get("x-csrf-token"):
        return Response(status_code=204)
    return _back(pool_id, "moved")


@router.post("/{group_id}/move")
async def move(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    """One step up or down: the keyboard's way to reorder."""
    pool_id = pool_id_or_404(pool_id)
    form = await ctx.request.form()
    step = -1 if form.get("dir") == "up" else 1
    ids = [g.id for g in await ctx.rt.store.list_groups(pool_id)]
    if group_id not in ids:
        raise NotFound(f"group {group_id!r} not found", {"group_id": group_id})
    i = ids.index(group_id)
    j = i + step
    if 0 <= j < len(ids):
        ids[i], ids[j] = ids[j], ids[i]
        await ctx.rt.store.reorder_groups(pool_id, ids)
    return _back(pool_id, "moved", group_id)


@router.post("/{group_id}/capacity")
async def set_capacity(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    form = await ctx.request.form()
    raw = str(form.get("capacity") or "").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise ConsoleError(422, ctx._("Capacity not changed"),
                           ctx._("Enter a whole number from 1 to 100000."))
    await ctx.rt.store.update_group(pool_id, group_id, GroupUpdate(capacity=int(raw)))
    return _back(pool_id, "saved", group_id)


@router.post("/{group_id}/enable")
async def enable(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    await ctx.rt.store.update_group(pool_id, group_id, GroupUpdate(enabled=True))
    return _back(pool_id, "enabled", group_id)


@router.post("/{group_id}/disable")
async def disable(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    await ctx.rt.store.update_group(pool_id, group_id, GroupUpdate(enabled=False))
    return _back(pool_id, "disabled", group_id)


async def _replace_page(ctx: Ctx, pool_id: str, group_id: str, status: int = 200,
                        error: str = "", url: str = "", expires: str = "") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id)
    group = await ctx.rt.store.get_group(pool_id, group_id)
    return ctx.page("replace.html", status, active="pool", pool=pool, group=group,
                    tz=pool.timezone, error=error, url=url, expires=expires,
                    tabs=pool_tabs(pool.id), tab="groups")


@router.get("/{group_id}/replace")
async def replace_form(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    """A group's new code (WeChat group codes expire every 7 days): same id, count and
    place."""
    return await _replace_page(ctx, pool_id_or_404(pool_id), group_id)


@router.post("/{group_id}/replace")
async def replace(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    """From a screenshot of the new code (decoded in a child process, as uploads are) or from
    a pasted link; the service layer renews a WeChat code's expiry."""
    pool_id = pool_id_or_404(pool_id)
    pool = await ctx.rt.store.get_pool(pool_id)
    await ctx.rt.store.get_group(pool_id, group_id)  # 404 before reading an image
    form = await ctx.request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    url = str(form.get("url") or "").strip()
    expires_raw = str(form.get("expires_at") or "").strip()
    try:
        expires = parse_local_time(expires_raw, pool.timezone)
    except ValueError:
        return await _replace_page(ctx, pool_id, group_id, 422, ctx._("Enter a date and time."),
                                   url, expires_raw)
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            url = await decoder.url_from_upload(await upload.read(qr.MAX_UPLOAD_BYTES + 1))
        elif not url:
            return await _replace_page(ctx, pool_id, group_id, 422,
                                       ctx._("Choose a screenshot of the new code, or paste "
                                             "its invite link."), url, expires_raw)
        await ctx.rt.store.replace_code(pool_id, group_id, url, expires)
    except NotFound:
        raise
    except LivecodeError as exc:
        message = (ctx._("No QR code found in the image.") if "no QR code" in exc.message
                   else exc.message)
        return await _replace_page(ctx, pool_id, group_id, exc.status, message, url,
                                   expires_raw)
    return _back(pool_id, "replaced", group_id)


@router.get("/{group_id}/{action}")
async def confirm(ctx: AdminCtx, pool_id: str, group_id: str, action: str) -> Response:
    """The confirmation page of reset and delete."""
    pool_id = pool_id_or_404(pool_id)
    group = await ctx.rt.store.get_group(pool_id, group_id)
    _ = ctx._
    label = group.name or group.id
    if action == "reset":
        title = _("Reset the count of %(name)s?") % {"name": label}
        message = _("Its count goes back to 0 (now %(count)s of %(capacity)s): it takes new "
                    "visitors again. Do this only when the chat group really has room.") % {
            "count": group.count, "capacity": group.capacity}
        button = _("Reset the count")
    elif action == "delete":
        title = _("Delete the group code %(name)s?") % {"name": label}
        message = _("Visitors stop being sent to it. Its count is lost.")
        button = _("Delete the group code")
    else:
        raise NotFound("no such page")
    return ctx.page("confirm.html", active="pool", title=title, message=message, button=button,
                    action=f"{BASE}/pools/{pool_id}/groups/{group.id}/{action}",
                    back=f"{BASE}/pools/{pool_id}#g-{group.id}", confirm_text="")


@router.post("/{group_id}/reset")
async def reset(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    await ctx.rt.store.reset_group(pool_id, group_id)
    return _back(pool_id, "reset", group_id)


@router.post("/{group_id}/delete")
async def delete(ctx: AdminCtx, pool_id: str, group_id: str) -> Response:
    pool_id = pool_id_or_404(pool_id)
    await ctx.rt.store.delete_group(pool_id, group_id)
    return _back(pool_id, "deleted")

