"""What each format sends: the request (URL, headers, body) for one message, and the rule that
tells a delivered reply from a failed one.

- standard: the Standard Webhooks payload `{"type", "timestamp", "data"}` with the event as
  `data`, signed (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...`).
- wecom: `{"msgtype": "text", "text": {"content"}}`; a reply's non-zero `errcode` is a failure.
- dingtalk: the same body; with a secret, `timestamp` and `sign` are added to the URL.
- feishu: `{"msg_type": "text", "content": {"text"}}`, with a secret `timestamp` and `sign` in
  the body; a reply's non-zero `code` (older API: `StatusCode`) is a failure.
- slack: `{"text"}`; any 2xx is success (Slack answers `ok`).

Chat texts are cut to MAX_CHAT_BYTES of UTF-8 (WeCom's limit, the strictest) on a character
boundary. Every request carries the event id as `webhook-id`: the chat platforms have no
idempotency field in their bodies, so for them the header is only informative.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from app.events.model import EventPublic
from app.webhooks.messages import event_text, test_text
from app.webhooks.sender import Judge, Outgoing

MAX_CHAT_BYTES = 2048
STANDARD_SECRET_PREFIX = "whsec_"
STANDARD_SECRET_BYTES = 32  # the spec asks for 24 to 64
TEST_EVENT_TYPE = "webhook.test"
# messages a minute each platform takes from one robot (0: no limit kept): WeCom's and
# DingTalk's documented 20 (DingTalk then blocks the robot for 10 minutes), Feishu's 100,
# Slack's one a second
RATE_PER_MIN = {"standard": 0, "wecom": 20, "dingtalk": 20, "feishu": 100, "slack": 60}


@dataclass(frozen=True)
class Message:
    """What is delivered: the idempotency key, the standard payload's parts, and the chat line."""

    id: str
    type: str
    at: datetime
    data: dict[str, Any]
    text: str


def event_message(event: EventPublic, language: str) -> Message:
    return Message(
        id=event.id, type=event.type, at=event.at, data=event.model_dump(mode="json"),
        text=event_text(event, language),
    )


def test_message(webhook_id: str, name: str, language: str) -> Message:
    """A test: `webhook.test` is not an event type of app/events/model.py, so its data is an
    event-shaped dict rather than an EventPublic."""
    at = datetime.now(UTC)
    event_id = "test_" + secrets.token_hex(8)
    data = {"id": event_id, "type": TEST_EVENT_TYPE, "at": iso(at), "pool_id": None,
            "pool_name": None, "group_id": None, "actor": None,
            "data": {"webhook_id": webhook_id}}
    return Message(event_id, TEST_EVENT_TYPE, at, data, test_text(name or webhook_id, language))


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_standard_secret() -> str:
    return STANDARD_SECRET_PREFIX + base64.b64encode(
        secrets.token_bytes(STANDARD_SECRET_BYTES)).decode()


def standard_secret_bytes(secret: str) -> bytes | None:
    """The key of a well-formed `whsec_` secret (24 to 64 bytes of base64), else None."""
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(STANDARD_SECRET_PREFIX):], validate=True)
    except ValueError:
        return None
    return key if 24 <= len(key) <= 64 else None


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` in at most `max_bytes` of UTF-8, cut on a character boundary, marked with '…'."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    ellipsis = "…"
    cut = raw[: max_bytes - len(ellipsis.encode("utf-8"))]
    return cut.decode("utf-8", "ignore") + ellipsis


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _b64_hmac(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def _reply(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _errcode_judge(code_fields: tuple[str, ...], msg_fields: tuple[str, ...]) -> Judge:
    """Chat platforms answer HTTP 200 even on failure: the reply's code must be 0."""

    def judge(status: int, body: bytes) -> str | None:
        reply = _reply(body)
        if reply is None:
            return f"HTTP {status} but the reply is not the platform's JSON"
        for field in code_fields:
            if field in reply:
                code = reply[field]
                if code == 0:
                    return None
                msg = next((str(reply[m]) for m in msg_fields if m in reply), "")
                return f"{field} {code}: {msg}"
        return f"HTTP {status} but the reply has no {code_fields[0]}"

    return judge


def _any_2xx(status: int, body: bytes) -> str | None:
    return None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def render(fmt: str, url: str, secret: str | None, message: Message, *, now: float) -> Outgoing:
    """The request of one attempt; `now` (Unix seconds) is the attempt's time, which the
    signatures cover."""
    headers = {"webhook-id": message.id}
    if fmt == "standard":
        body = _json({"type": message.type, "timestamp": iso(message.at), "data": message.data})
        timestamp = str(int(now))
        headers["webhook-timestamp"] = timestamp
        key = standard_secret_bytes(secret or "")
        if key is not None:
            signed = f"{message.id}.{timestamp}.".encode() + body
            headers["webhook-signature"] = "v1," + _b64_hmac(key, signed)
        return Outgoing(url, headers, body, _any_2xx)
    text = truncate_utf8(message.text, MAX_CHAT_BYTES)
    if fmt == "wecom":
        body = _json({"msgtype": "text", "text": {"content": text}})
        return Outgoing(url, headers, body, _errcode_judge(("errcode",), ("errmsg",)))
    if fmt == "dingtalk":
        if secret:
            ms = str(int(now * 1000))
            sign = _b64_hmac(secret.encode(), f"{ms}\n{secret}".encode())
            url = _with_query(url, {"timestamp": ms, "sign": sign})
        body = _json({"msgtype": "text", "text": {"content": text}})
        return Outgoing(url, headers, body, _errcode_judge(("errcode",), ("errmsg",)))
    if fmt == "feishu":
        payload: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
        if secret:
            ts = str(int(now))
            payload = {"timestamp": ts, "sign": _b64_hmac(f"{ts}\n{secret}".encode(), b""),
                       **payload}
        judge = _errcode_judge(("code", "StatusCode"), ("msg", "StatusMessage"))
        return Outgoing(url, headers, _json(payload), judge)
    if fmt == "slack":
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Outgoing(url, headers, _json({"text": escaped}), _any_2xx)
    raise ValueError(f"unknown webhook format {fmt!r}")
