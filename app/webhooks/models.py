"""Webhooks and their deliveries as the API, the CLI and the store see them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.events.model import EVENT_TYPES, EventPublic, EventType
from app.schemas import Bool, Name, PoolId, UrlStr

WebhookFormat = Literal["standard", "wecom", "dingtalk", "feishu", "slack"]
FORMATS: tuple[str, ...] = get_args(WebhookFormat)
DeliveryStatus = Literal["pending", "delivered", "dead"]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)

MAX_POOLS_PER_WEBHOOK = 100


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EVENT_TYPES)),
    AfterValidator(_unique),
]
PoolIds = Annotated[
    list[PoolId], Field(min_length=1, max_length=MAX_POOLS_PER_WEBHOOK), AfterValidator(_unique)
]
# printable ASCII without spaces: what the platforms hand out (DingTalk's SEC..., Feishu's)
Secret = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[!-~]+$")]

_EVENTS_DOC = "event types to deliver; null or omitted: every type"
_POOLS_DOC = "pool ids whose events to deliver; null or omitted: every pool (and events of none)"
_SECRET_DOC = (
    "standard: a whsec_ secret to sign with (omit it and one is generated and shown once); "
    "dingtalk, feishu: the bot's signing secret from the platform (optional); wecom, slack: none "
    "(the key is in the URL)"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Model):
    url: UrlStr
    format: WebhookFormat = "standard"
    events: EventTypes | None = Field(default=None, description=_EVENTS_DOC)
    pools: PoolIds | None = Field(default=None, description=_POOLS_DOC)
    enabled: Bool = True
    name: Name = ""
    secret: Secret | None = Field(default=None, description=_SECRET_DOC)


class WebhookUpdate(_Model):
    """Only the fields given change; `events`, `pools` or `secret` given as null mean every type,
    every pool, no secret."""

    url: UrlStr | None = None
    format: WebhookFormat | None = None
    events: EventTypes | None = Field(default=None, description=_EVENTS_DOC)
    pools: PoolIds | None = Field(default=None, description=_POOLS_DOC)
    enabled: Bool | None = None
    name: Name | None = None
    secret: Secret | None = Field(default=None, description=_SECRET_DOC)


class WebhookPublic(_Model):
    id: str
    name: str
    url: str = Field(description="the target, with the secret parts of it masked")
    format: WebhookFormat
    events: list[EventType] | None = Field(description="null: every type")
    pools: list[str] | None = Field(description="null: every pool")
    enabled: bool
    has_secret: bool
    pending: int = Field(description="deliveries waiting to be sent")
    rate_per_min: int = Field(
        description="at most this many messages a minute, the platform's limit (0: none)")
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(
        default=None,
        description="the generated signing secret: only in the response that generated it",
    )


class WebhookList(_Model):
    items: list[WebhookPublic]


class Attempt(_Model):
    at: datetime
    status: int | None = Field(description="the HTTP status; null: no response")
    latency_ms: int
    ok: bool
    error: str | None = None


class DeliveryPublic(_Model):
    id: str
    webhook_id: str
    status: DeliveryStatus
    event: EventPublic
    language: str
    created_at: datetime
    next_attempt_at: datetime | None = Field(
        description="pending: when it is due (while being sent: when its lease ends)"
    )
    finished_at: datetime | None = Field(description="when it was delivered or dead-lettered")
    attempts_total: int
    last_error: str | None
    attempts: list[Attempt] = Field(description="the latest attempts, newest first")


class DeliveryList(_Model):
    items: list[DeliveryPublic]
