"""The event as every reader sees it: the events API, `livecode events`, the console and the
webhooks (which deliver it as the JSON body of a `standard` webhook, or as a chat message)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

EventType = Literal[
    # caused by scans, recorded by the scan script in the same call
    "group.full",  # a group's count reached its capacity
    "pool.low",  # time to exhaustion or room left fell below the pool's thresholds
    "pool.exhausted",  # the first fallback after the pool had room
    "pool.recovered",  # room again after pool.exhausted
    # time-based, recorded by the scheduler (once per deployment)
    "group.expiring",  # a group's code expires within the pool's threshold (default 24 h)
    "group.expired",  # a group's code expired while it was taking scans
    # admin changes: the audit trail, with the API key that made them
    "pool.created",
    "pool.updated",
    "pool.deleted",
    "pool.paused",
    "pool.resumed",
    "group.created",
    "group.updated",
    "group.deleted",
    "key.created",
    "key.revoked",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[str, ...] = get_args(Language)


class EventPublic(BaseModel):
    """One event. `id` is unique and stable across readers (the webhooks' idempotency key)."""

    id: str
    type: EventType
    at: datetime
    pool_id: str | None = None
    pool_name: str | None = None
    group_id: str | None = None
    actor: str | None = Field(
        default=None, description="the API key id (or 'cli') behind an admin change"
    )
    data: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "by type: group.full {capacity, count}; pool.low {reason: 'rate'|'room', remaining, "
            "capacity, percent_left, minutes_left (null: no scans lately), rate_per_min}; "
            "pool.exhausted {}; pool.recovered {remaining}; group.expiring {expires_at, "
            "hours_left}; group.expired {expires_at}; admin changes {fields: [...]} (the "
            "fields that changed)"
        ),
    )
