"""Webhooks: /api/v1/webhooks (subscriptions, test, deliveries, dead letters)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Query, Request, Response

from app.auth import AdminKey, ReadKey
from app.deps import ERROR_RESPONSES
from app.events.model import Language
from app.webhooks.models import (
    Attempt,
    DeliveryList,
    DeliveryPublic,
    DeliveryStatus,
    WebhookCreate,
    WebhookList,
    WebhookPublic,
    WebhookUpdate,
)
from app.webhooks.service import Webhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=200)]


def _webhooks(request: Request) -> Webhooks:
    return cast(Webhooks, request.app.state.webhooks)


@router.post("", status_code=201)
async def create_webhook(body: WebhookCreate, request: Request, _: AdminKey) -> WebhookPublic:
    """A standard webhook's signing secret (`whsec_...`) is generated and returned in this
    response only: store it now."""
    return await _webhooks(request).store.create(body)


@router.get("")
async def list_webhooks(request: Request, _: ReadKey) -> WebhookList:
    return WebhookList(items=await _webhooks(request).store.list())


@router.get("/dead-letters")
async def dead_letters(request: Request, _: ReadKey, limit: Limit = 50) -> DeliveryList:
    """Every webhook's dead letters (deliveries that failed until their maximum age), newest
    first. Redeliver one with POST /webhooks/{id}/deliveries/{delivery_id}/redeliver."""
    return DeliveryList(items=await _webhooks(request).store.dead_letters(limit=limit))


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, request: Request, _: ReadKey) -> WebhookPublic:
    return await _webhooks(request).store.get(webhook_id)


@router.patch("/{webhook_id}")
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, request: Request, _: AdminKey
) -> WebhookPublic:
    return await _webhooks(request).store.update(webhook_id, body)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, request: Request, _: AdminKey) -> Response:
    await _webhooks(request).store.delete(webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/test")
async def test_webhook(
    webhook_id: str, request: Request, _: AdminKey, language: Language = "en"
) -> Attempt:
    """Send a test message now (once, no retries, not recorded) and return the attempt."""
    return await _webhooks(request).test(webhook_id, language)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    request: Request,
    _: ReadKey,
    limit: Limit = 50,
    status: DeliveryStatus | None = None,
) -> DeliveryList:
    """The webhook's deliveries with their latest attempts, newest first."""
    store = _webhooks(request).store
    return DeliveryList(items=await store.deliveries(webhook_id, limit=limit, status=status))


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    webhook_id: str, delivery_id: str, request: Request, _: AdminKey
) -> DeliveryPublic:
    """Put a delivery (a dead letter, a delivered or a pending one) back in the queue, due now,
    with a fresh maximum age."""
    return await _webhooks(request).store.redeliver(webhook_id, delivery_id)
