"""Webhooks: the list, add (a standard webhook's generated secret is shown once), edit,
enable/disable, delete, send a test and show its attempt, each webhook's delivery log (updated
live) with redelivery, and every webhook's dead letters. Everything goes through the app's
`Webhooks` (app/webhooks/service.py), as the API does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from fastapi import APIRouter, Response
from pydantic import ValidationError

from app.console.event_routes import event_views
from app.console.forms import FormErrors
from app.console.web import BASE, AdminCtx, ConsoleRoute, Ctx, PollCtx, ReadCtx, redirect
from app.errors import Conflict, InvalidInput, LivecodeError
from app.events.model import EVENT_TYPES, LANGUAGES
from app.webhooks.models import (
    DELIVERY_STATUSES,
    FORMATS,
    Attempt,
    DeliveryPublic,
    WebhookCreate,
    WebhookPublic,
    WebhookUpdate,
)
from app.webhooks.service import Webhooks

router = APIRouter(prefix=BASE + "/webhooks", route_class=ConsoleRoute, include_in_schema=False)

LOG_LIMIT = 50
POOL_CHOICES = 200


def _webhooks(ctx: Ctx) -> Webhooks:
    return cast(Webhooks, ctx.request.app.state.webhooks)


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _values(form: Any) -> dict[str, Any]:
    """The form as it was filled in (to show it again), with the lists it ticked."""
    return {
        "name": _text(form, "name"), "url": _text(form, "url"),
        "format": _text(form, "format") or "standard",
        "enabled": form.get("enabled") == "1",
        "events_mode": "some" if form.get("events_mode") == "some" else "all",
        "events": [str(t) for t in form.getlist("events") if t in EVENT_TYPES],
        "pools_mode": "some" if form.get("pools_mode") == "some" else "all",
        "pools": [str(p) for p in form.getlist("pools")][:POOL_CHOICES],
        "secret": _text(form, "secret"), "reset_secret": form.get("reset_secret") == "1",
    }


def _fields(values: dict[str, Any], *, editing: bool) -> dict[str, Any]:
    """The form's values as the API's JSON would give them. Editing, an empty URL or secret
    keeps the stored one (the page never shows them: they are secrets)."""
    fields: dict[str, Any] = {
        "name": values["name"], "format": values["format"], "enabled": values["enabled"],
        "events": values["events"] if values["events_mode"] == "some" else None,
        "pools": values["pools"] if values["pools_mode"] == "some" else None,
    }
    if values["url"] or not editing:
        fields["url"] = values["url"]
    if values["secret"]:
        fields["secret"] = values["secret"]
    elif values["reset_secret"] or not editing:
        fields["secret"] = None
    return fields


def _form_errors(exc: ValidationError | LivecodeError) -> FormErrors:
    errors = FormErrors()
    if isinstance(exc, ValidationError):
        for e in exc.errors():
            loc = str(e.get("loc", ("",))[0])
            field = loc if loc in ("url", "name", "format", "events", "pools", "secret") \
                else ""
            if field:
                errors.fields.setdefault(field, "webhook_" + field)
            else:
                errors.general.append(str(e.get("msg", "")))
        return errors
    details = exc.details if isinstance(exc.details, dict) else {}
    field = str(details.get("field", ""))
    if field in ("url", "secret"):
        errors.fields[field] = "webhook_" + field + "_refused"
    errors.general.append(exc.message)
    return errors


async def _pool_choices(ctx: Ctx) -> list[tuple[str, str]]:
    pools, _ = await ctx.rt.store.list_pools(limit=POOL_CHOICES)
    return [(p.id, p.name or p.id) for p in pools]


def _blank() -> dict[str, Any]:
    return {"name": "", "url": "", "format": "standard", "enabled": True, "events_mode": "all",
            "events": [], "pools_mode": "all", "pools": [], "secret": "",
            "reset_secret": False}


def _state(w: WebhookPublic) -> dict[str, Any]:
    return {"name": w.name, "url": "", "format": w.format, "enabled": w.enabled,
            "events_mode": "all" if w.events is None else "some", "events": w.events or [],
            "pools_mode": "all" if w.pools is None else "some", "pools": w.pools or [],
            "secret": "", "reset_secret": False}


async def _form_page(ctx: Ctx, webhook: WebhookPublic | None, values: dict[str, Any],
                     errors: FormErrors, status: int = 200) -> Response:
    return ctx.page("webhook_form.html", status, active="webhooks", webhook=webhook,
                    values=values, errors=errors, formats=FORMATS, event_types=EVENT_TYPES,
                    pool_choices=await _pool_choices(ctx))


async def _log(ctx: Ctx, webhook_id: str, status: str) -> dict[str, Any]:
    chosen = status if status in DELIVERY_STATUSES else ""
    deliveries = await _webhooks(ctx).store.deliveries(webhook_id, limit=LOG_LIMIT,
                                                       status=chosen or None)
    views = await event_views(ctx, [d.event for d in deliveries])
    return {"log": list(zip(deliveries, views, strict=True)), "log_status": chosen,
            "statuses": DELIVERY_STATUSES}


async def _detail(ctx: Ctx, webhook: WebhookPublic, *, status: str = "", done: str = "",
                  attempt: Attempt | None = None, secret: str | None = None) -> Response:
    names = dict(await _pool_choices(ctx))
    return ctx.page("webhook.html", active="webhooks", webhook=webhook,
                    pool_names=names, done=done, attempt=attempt, secret=secret,
                    languages=LANGUAGES, **await _log(ctx, webhook.id, status))


@router.get("")
async def webhooks_page(ctx: ReadCtx, done: str = "") -> Response:
    webhooks = await _webhooks(ctx).store.list()
    dead = await _webhooks(ctx).store.dead_letters(limit=1)
    return ctx.page("webhooks.html", active="webhooks", webhooks=webhooks, done=done,
                    any_dead=bool(dead), pool_names=dict(await _pool_choices(ctx)))


@router.get("/new")
async def new_webhook(ctx: AdminCtx) -> Response:
    return await _form_page(ctx, None, _blank(), FormErrors())


@router.post("")
async def create_webhook(ctx: AdminCtx) -> Response:
    values = _values(await ctx.request.form(max_fields=len(EVENT_TYPES) + POOL_CHOICES + 20))
    try:
        created = await _webhooks(ctx).store.create(
            WebhookCreate.model_validate(_fields(values, editing=False)))
    except (ValidationError, InvalidInput, Conflict) as exc:
        return await _form_page(ctx, None, values, _form_errors(exc), 422)
    return await _saved(ctx, created, "wh_created")


async def _saved(ctx: Ctx, webhook: WebhookPublic, done: str) -> Response:
    """To the webhook's page; a generated secret is shown there once (kept for this session's
    next page only: reloading that page posts nothing again)."""
    if webhook.secret:
        await ctx.reveal_next("webhook", webhook.id, webhook.secret)
    return redirect(f"{BASE}/webhooks/{webhook.id}?done={done}")


@router.get("/dead-letters")
async def dead_letters(ctx: ReadCtx, done: str = "") -> Response:
    deliveries = await _webhooks(ctx).store.dead_letters(limit=LOG_LIMIT)
    views = await event_views(ctx, [d.event for d in deliveries])
    names = {w.id: w.name or w.id for w in await _webhooks(ctx).store.list()}
    return ctx.page("dead_letters.html", active="webhooks", done=done, back="dead",
                    log_status="dead", log=list(zip(deliveries, views, strict=True)),
                    webhook_names=names)


@router.get("/{webhook_id}")
async def webhook_page(ctx: ReadCtx, webhook_id: str, status: str = "",
                       done: str = "") -> Response:
    webhook = await _webhooks(ctx).store.get(webhook_id)
    return await _detail(ctx, webhook, status=status, done=done,
                         secret=await ctx.revealed("webhook", webhook.id))


@router.get("/{webhook_id}/deliveries")
async def deliveries_live(ctx: PollCtx, webhook_id: str, status: str = "") -> Response:
    """The delivery log again (polled while the page is open): one read of the log."""
    webhook = await _webhooks(ctx).store.get(webhook_id)
    return ctx.page("_deliveries.html", webhook=webhook, **await _log(ctx, webhook_id, status))


@router.get("/{webhook_id}/edit")
async def edit_form(ctx: AdminCtx, webhook_id: str) -> Response:
    webhook = await _webhooks(ctx).store.get(webhook_id)
    return await _form_page(ctx, webhook, _state(webhook), FormErrors())


@router.post("/{webhook_id}/edit")
async def edit(ctx: AdminCtx, webhook_id: str) -> Response:
    store = _webhooks(ctx).store
    webhook = await store.get(webhook_id)
    values = _values(await ctx.request.form(max_fields=len(EVENT_TYPES) + POOL_CHOICES + 20))
    try:
        updated = await store.update(webhook.id,
                                     WebhookUpdate.model_validate(_fields(values, editing=True)))
    except (ValidationError, InvalidInput, Conflict) as exc:
        return await _form_page(ctx, webhook, values, _form_errors(exc), 422)
    return await _saved(ctx, updated, "saved")


async def _switch(ctx: Ctx, webhook_id: str, on: bool) -> Response:
    await _webhooks(ctx).store.update(webhook_id, WebhookUpdate(enabled=on))
    return redirect(f"{BASE}/webhooks/{webhook_id}?done={'wh_enabled' if on else 'wh_disabled'}")


@router.post("/{webhook_id}/enable")
async def enable(ctx: AdminCtx, webhook_id: str) -> Response:
    return await _switch(ctx, webhook_id, True)


@router.post("/{webhook_id}/disable")
async def disable(ctx: AdminCtx, webhook_id: str) -> Response:
    return await _switch(ctx, webhook_id, False)


@router.post("/{webhook_id}/test")
async def send_test(ctx: AdminCtx, webhook_id: str) -> Response:
    """A test message now, once, not recorded: the page shows how the attempt went."""
    form = await ctx.request.form()
    language = _text(form, "language")
    hooks = _webhooks(ctx)
    webhook = await hooks.store.get(webhook_id)
    attempt = await hooks.test(webhook.id, language if language in LANGUAGES else ctx.locale)
    return await _detail(ctx, webhook, attempt=attempt)


@router.get("/{webhook_id}/delete")
async def delete_confirm(ctx: AdminCtx, webhook_id: str) -> Response:
    webhook = await _webhooks(ctx).store.get(webhook_id)
    _ = ctx._
    return ctx.page(
        "confirm.html", active="webhooks",
        title=_("Delete the webhook %(name)s?") % {"name": webhook.name or webhook.id},
        message=_("Nothing more is sent to it, and its %(n)s waiting deliveries and its "
                  "delivery log go too.") % {"n": webhook.pending},
        action=f"{BASE}/webhooks/{webhook.id}/delete", button=_("Delete the webhook"),
        back=f"{BASE}/webhooks/{webhook.id}", confirm_text="",
    )


@router.post("/{webhook_id}/delete")
async def delete(ctx: AdminCtx, webhook_id: str) -> Response:
    await _webhooks(ctx).store.delete(webhook_id)
    return redirect(f"{BASE}/webhooks?done=deleted")


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(ctx: AdminCtx, webhook_id: str, delivery_id: str) -> Response:
    """Back in the queue, due now (a dead letter, a delivered one, or a pending one)."""
    form = await ctx.request.form()
    delivery: DeliveryPublic = await _webhooks(ctx).store.redeliver(webhook_id, delivery_id)
    if _text(form, "back") == "dead":
        return redirect(f"{BASE}/webhooks/dead-letters?done=redelivered")
    return redirect(f"{BASE}/webhooks/{webhook_id}?done=redelivered#{delivery.id}")

