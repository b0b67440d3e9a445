"""`livecode webhooks`: the webhook commands, over the same service layer as the API
(app/webhooks/store.py) and through `cli_admin.run` (the store, and errors as one line)."""

from __future__ import annotations

from typing import Any

import click

from app.cli_admin import Stores, echo_json, run
from app.events.model import LANGUAGES
from app.webhooks.models import (
    DELIVERY_STATUSES,
    FORMATS,
    Attempt,
    DeliveryPublic,
    WebhookCreate,
    WebhookPublic,
    WebhookUpdate,
)
from app.webhooks.sender import Sender
from app.webhooks.service import open_store, send_test
from app.webhooks.store import WebhookStore


async def _store(s: Stores) -> WebhookStore:
    return await open_store(s.pools.r, s.settings)


def _list(value: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b']; 'all' -> None (every one)."""
    if value is None or value.strip() == "all":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _dump(model: WebhookPublic | DeliveryPublic | Attempt) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


@click.group()
def webhooks() -> None:
    """Webhooks: events to an endpoint or a chat robot (WeCom, DingTalk, Feishu, Slack)."""


@webhooks.command("add")
@click.argument("url")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="standard", show_default=True)
@click.option("--events", default=None, help="event types, comma-separated [all]")
@click.option("--pools", default=None, help="pool ids, comma-separated [all]")
@click.option("--name", default="")
@click.option("--secret", default=None,
              help="dingtalk/feishu: the bot's signing secret; standard: a whsec_ secret "
                   "(default: generated, printed once)")
@click.option("--disabled", is_flag=True, help="create it switched off")
def webhooks_add(url: str, fmt: str, events: str | None, pools: str | None, name: str,
                 secret: str | None, disabled: bool) -> None:
    """Subscribe URL to events. A standard webhook's secret is printed once: store it."""
    fields = {"url": url, "format": fmt, "events": _list(events), "pools": _list(pools),
              "name": name, "secret": secret, "enabled": not disabled}

    async def action(s: Stores) -> WebhookPublic:
        store = await _store(s)
        return await store.create(WebhookCreate.model_validate(fields))

    echo_json(_dump(run(action)))


@webhooks.command("list")
def webhooks_list() -> None:
    async def action(s: Stores) -> list[WebhookPublic]:
        return await (await _store(s)).list()

    for w in run(action):
        state = "on" if w.enabled else "off"
        click.echo(f"{w.id}  {w.format:8}  {state:3}  pending {w.pending}  {w.url}  {w.name}")


@webhooks.command("show")
@click.argument("webhook_id")
def webhooks_show(webhook_id: str) -> None:
    async def action(s: Stores) -> WebhookPublic:
        return await (await _store(s)).get(webhook_id)

    echo_json(_dump(run(action)))


@webhooks.command("update")
@click.argument("webhook_id")
@click.option("--url", default=None)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None)
@click.option("--events", default=None, help="event types, comma-separated, or 'all'")
@click.option("--pools", default=None, help="pool ids, comma-separated, or 'all'")
@click.option("--name", default=None)
@click.option("--secret", default=None, help="a new secret (see `add`)")
@click.option("--new-secret", is_flag=True,
              help="standard: generate a new secret (printed once); others: remove it")
@click.option("--enable/--disable", "enabled", default=None)
def webhooks_update(webhook_id: str, url: str | None, fmt: str | None, events: str | None,
                    pools: str | None, name: str | None, secret: str | None, new_secret: bool,
                    enabled: bool | None) -> None:
    """Change the options given; the others stay."""
    fields: dict[str, Any] = {k: v for k, v in
                              {"url": url, "format": fmt, "name": name, "enabled": enabled,
                               "secret": secret}.items() if v is not None}
    if events is not None:
        fields["events"] = _list(events)
    if pools is not None:
        fields["pools"] = _list(pools)
    if new_secret:
        if secret is not None:
            raise click.UsageError("--secret and --new-secret exclude each other")
        fields["secret"] = None

    async def action(s: Stores) -> WebhookPublic:
        store = await _store(s)
        return await store.update(webhook_id, WebhookUpdate.model_validate(fields))

    echo_json(_dump(run(action)))


@webhooks.command("delete")
@click.argument("webhook_id")
def webhooks_delete(webhook_id: str) -> None:
    """Delete the webhook and its deliveries (pending ones are not sent)."""

    async def action(s: Stores) -> None:
        await (await _store(s)).delete(webhook_id)

    run(action)
    click.echo(f"{webhook_id} deleted")


@webhooks.command("test")
@click.argument("webhook_id")
@click.option("--language", type=click.Choice(LANGUAGES), default="en", show_default=True)
def webhooks_test(webhook_id: str, language: str) -> None:
    """Send a test message now (once, no retries) and print the attempt; exit 1 if it
    failed."""

    async def action(s: Stores) -> Attempt:
        sender = Sender(s.settings)
        try:
            return await send_test(await _store(s), sender, webhook_id, language)
        finally:
            await sender.aclose()

    attempt = run(action)
    echo_json(_dump(attempt))
    if not attempt.ok:
        raise click.ClickException(f"the test failed: {attempt.error}")


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None)
def webhooks_deliveries(webhook_id: str, limit: int, status: str | None) -> None:
    """The webhook's deliveries with their attempts, newest first (JSON)."""

    async def action(s: Stores) -> list[DeliveryPublic]:
        store = await _store(s)
        return await store.deliveries(webhook_id, limit=limit, status=status)

    echo_json([_dump(d) for d in run(action)])


@webhooks.command("redeliver")
@click.argument("webhook_id")
@click.argument("delivery_id")
def webhooks_redeliver(webhook_id: str, delivery_id: str) -> None:
    """Put a delivery (a dead letter too) back in the queue, due now."""

    async def action(s: Stores) -> DeliveryPublic:
        return await (await _store(s)).redeliver(webhook_id, delivery_id)

    delivery = run(action)
    click.echo(f"{delivery.id} queued ({delivery.status})")


@webhooks.command("dead-letters")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
def webhooks_dead_letters(limit: int) -> None:
    """Every webhook's dead letters, newest first (JSON)."""

    async def action(s: Stores) -> list[DeliveryPublic]:
        return await (await _store(s)).dead_letters(limit=limit)

    echo_json([_dump(d) for d in run(action)])


COMMANDS = [webhooks]
