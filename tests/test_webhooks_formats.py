"""What each webhook format sends, checked against the shape the platform documents (WeCom,
DingTalk, Feishu/Lark, Slack) in zh-CN and en, through a real deliverer to a real receiver.
DingTalk's and Feishu's signatures are checked against the platforms' documented formulas,
computed here independently (../shared/FIELD-NOTES.md, "What operators use")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from importlib.resources import files
from typing import Any
from urllib.parse import quote_plus

import pytest
import redis.asyncio as aredis
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from app.events.model import EVENT_TYPES, EventPublic
from app.webhooks.deliverer import Deliverer, enqueue
from app.webhooks.formats import MAX_CHAT_BYTES, truncate_utf8
from app.webhooks.messages import event_text
from app.webhooks.store import WebhookStore
from tests.webhook_helpers import add, event, open_store, settings
from tests.webhook_receiver import OK_BODIES, Received, Receiver

ZH = "[livecode] 春季活动: 预计 47 分钟后满员, 剩余 312 个名额"
EN = "[livecode] Spring campaign: full in about 47 minutes at the current rate, 312 places left"
DINGTALK_SECRET = "SEC" + "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
FEISHU_SECRET = "fS9kd83nLx0qPz7vT2wY"


@pytest.fixture
async def store(client: aredis.Redis) -> WebhookStore:
    return await open_store(client)


async def deliver(redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver,
                  fmt: str, ev: EventPublic, language: str, *, path: str = "/hook",
                  secret: str | None = None) -> Received:
    """Create a webhook of `fmt`, enqueue `ev`, run a deliverer once: the request it sent."""
    rx.ok_body = OK_BODIES[fmt]
    hook = await add(store, rx.url(path), format=fmt, secret=secret)
    await enqueue(client, ev, language)
    d = Deliverer(store, settings(redis_url), poll_s=0.05)
    assert await d.run_once() == 1
    await d.aclose()
    (delivery,) = await store.deliveries(hook.id)
    assert delivery.status == "delivered", delivery.attempts
    return rx.requests[-1]


def spring(language: str, **fields: Any) -> EventPublic:
    return event(pool_name="春季活动" if language == "zh-CN" else "Spring campaign", **fields)


LANGS = [("zh-CN", ZH), ("en", EN)]


@pytest.mark.parametrize(("language", "text"), LANGS)
async def test_wecom_text_message(redis_url: str, client: aredis.Redis, store: WebhookStore,
                                  rx: Receiver, language: str, text: str) -> None:
    req = await deliver(redis_url, client, store, rx, "wecom", spring(language), language,
                        path="/cgi-bin/webhook/send?key=693a91f6-7xxx")
    assert req.query == {"key": ["693a91f6-7xxx"]}
    assert req.json() == {"msgtype": "text", "text": {"content": text}}
    assert len(req.json()["text"]["content"].encode()) <= 2048


@pytest.mark.parametrize(("language", "text"), LANGS)
async def test_dingtalk_text_message_signed(redis_url: str, client: aredis.Redis,
                                            store: WebhookStore, rx: Receiver, language: str,
                                            text: str) -> None:
    req = await deliver(redis_url, client, store, rx, "dingtalk", spring(language), language,
                        path="/robot/send?access_token=T0k3n", secret=DINGTALK_SECRET)
    assert req.json() == {"msgtype": "text", "text": {"content": text}}
    assert req.query["access_token"] == ["T0k3n"]
    (ms,) = req.query["timestamp"]
    assert abs(int(ms) - time.time() * 1000) < 30_000  # milliseconds
    # sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\n{secret}")))
    expected = base64.b64encode(hmac.new(
        DINGTALK_SECRET.encode("utf-8"), f"{ms}\n{DINGTALK_SECRET}".encode(),
        hashlib.sha256).digest()).decode()
    assert req.query["sign"] == [expected]
    assert f"sign={quote_plus(expected)}" in req.raw_query.split("&")


async def test_dingtalk_without_secret_is_not_signed(
        redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver) -> None:
    req = await deliver(redis_url, client, store, rx, "dingtalk", spring("en"), "en",
                        path="/robot/send?access_token=T0k3n")
    assert req.query == {"access_token": ["T0k3n"]}


@pytest.mark.parametrize(("language", "text"), LANGS)
async def test_feishu_text_message_signed(redis_url: str, client: aredis.Redis,
                                          store: WebhookStore, rx: Receiver, language: str,
                                          text: str) -> None:
    req = await deliver(redis_url, client, store, rx, "feishu", spring(language), language,
                        path="/open-apis/bot/v2/hook/0b2c5d8e-aaaa", secret=FEISHU_SECRET)
    body = req.json()
    assert set(body) == {"timestamp", "sign", "msg_type", "content"}
    assert body["msg_type"] == "text" and body["content"] == {"text": text}
    ts = body["timestamp"]
    assert isinstance(ts, str) and abs(int(ts) - time.time()) < 30  # seconds, as a string
    # sign = base64(HMAC-SHA256(key=f"{timestamp}\n{secret}", msg=empty))
    expected = base64.b64encode(hmac.new(
        f"{ts}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == expected


async def test_feishu_without_secret(redis_url: str, client: aredis.Redis, store: WebhookStore,
                                     rx: Receiver) -> None:
    req = await deliver(redis_url, client, store, rx, "feishu", spring("zh-CN"), "zh-CN")
    assert req.json() == {"msg_type": "text", "content": {"text": ZH}}


@pytest.mark.parametrize(("language", "text"), LANGS)
async def test_slack_text_message(redis_url: str, client: aredis.Redis, store: WebhookStore,
                                  rx: Receiver, language: str, text: str) -> None:
    req = await deliver(redis_url, client, store, rx, "slack", spring(language), language,
                        path="/services/T000/B000/XXXXXXXX")
    assert req.json() == {"text": text}


async def test_slack_text_is_escaped(redis_url: str, client: aredis.Redis, store: WebhookStore,
                                     rx: Receiver) -> None:
    ev = event(pool_name="<!channel> & <https://evil.example|click>")
    req = await deliver(redis_url, client, store, rx, "slack", ev, "en")
    text = req.json()["text"]
    assert "<" not in text and ">" not in text
    assert text.startswith("[livecode] &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;:")


@pytest.mark.parametrize("fmt", ["wecom", "dingtalk", "feishu", "slack"])
async def test_long_messages_are_cut_to_2048_bytes_on_a_character(
        redis_url: str, client: aredis.Redis, store: WebhookStore, rx: Receiver,
        fmt: str) -> None:
    ev = event("pool.updated", pool_name="春" * 200,
               data={"fields": [f"字段{i}" * 20 for i in range(40)]})
    full = event_text(ev, "zh-CN")
    assert len(full.encode()) > 2048
    req = await deliver(redis_url, client, store, rx, fmt, ev, "zh-CN")
    body = req.json()
    text = {"wecom": lambda: body["text"]["content"], "dingtalk": lambda: body["text"]["content"],
            "feishu": lambda: body["content"]["text"], "slack": lambda: body["text"]}[fmt]()
    assert len(text.encode("utf-8")) <= MAX_CHAT_BYTES
    assert text.endswith("…") and full.startswith(text[:-1])
    assert len(text.encode("utf-8")) > MAX_CHAT_BYTES - 8  # cut at the limit, not far before


def test_truncate_utf8_never_splits_a_character() -> None:
    text = "ab春🎉c" * 50
    for limit in range(4, len(text.encode()) + 3):
        cut = truncate_utf8(text, limit)
        raw = cut.encode("utf-8")
        assert len(raw) <= limit
        if cut != text:
            assert cut.endswith("…") and text.startswith(cut[:-1])
            assert len(raw) > limit - 3 - 4  # at most one character (<= 4 bytes) short
    assert truncate_utf8("short", 2048) == "short"


SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "group.full": {"capacity": 200, "count": 200},
    "pool.low": {"reason": "room", "remaining": 12, "capacity": 1000, "percent_left": 1.2,
                 "minutes_left": None, "rate_per_min": 0},
    "pool.exhausted": {},
    "pool.recovered": {"remaining": 50},
    "group.expiring": {"expires_at": "2026-03-01T10:00:00Z", "hours_left": 5.2},
    "group.expired": {"expires_at": "2026-03-01T10:00:00Z"},
}


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_event_type_has_a_message_in_both_languages(type_: str) -> None:
    ev = EventPublic.model_validate({
        "id": "e1", "type": type_, "at": "2026-03-01T00:00:00Z", "pool_id": "spring",
        "pool_name": "Spring", "group_id": "wx-1", "actor": "ab12cd34",
        "data": SAMPLE_DATA.get(type_, {"fields": ["name"]})})
    en, zh = event_text(ev, "en"), event_text(ev, "zh-CN")
    assert en.startswith("[livecode] ") and zh.startswith("[livecode] ")
    assert en != zh and re.search(r"[\u4e00-\u9fff]", zh), (en, zh)
    assert "?" not in en and "%" not in en.replace("%)", ""), en  # every value filled in
    if type_.startswith(("pool.", "group.")):
        assert "Spring" in en and "Spring" in zh
    if type_.startswith("group.") and type_ != "group.full":
        assert "wx-1" in zh
    if type_ in ("pool.created", "key.revoked"):
        assert "ab12cd34" in en and "ab12cd34" in zh  # the actor of an admin change


def test_expiry_times_name_their_zone() -> None:
    ev = event("group.expiring", group_id="wx-1",
               data={"expires_at": "2026-03-01T10:00:00Z", "hours_left": 23.6})
    assert event_text(ev, "en").endswith(
        "the code of group wx-1 expires in about 24 hours (2026-03-01 10:00 UTC)")
    assert event_text(ev, "zh-CN").endswith(
        "群 wx-1 的群码约 24 小时后过期 (2026-03-01 18:00 UTC+8)")


def test_a_message_survives_data_of_an_unexpected_shape() -> None:
    ev = event("group.full", data={"capacity": "lots", "count": None})
    assert event_text(ev, "en") == "[livecode] Spring campaign: group - is full (?/?)"


def test_the_catalog_has_every_message_and_nothing_else() -> None:
    source = files("app.webhooks") / "messages.py"
    keywords = {"_": None, "_mark": None, "n_": (1, 2)}
    with source.open("rb") as f:
        used = {m[1] if isinstance(m[1], str) else m[1][0]
                for m in extract_from_file("python", f.name, keywords=keywords)}
    po = files("app.i18n") / "locales" / "zh_CN" / "LC_MESSAGES" / "alerts.po"
    with po.open("rb") as f:
        catalog = read_po(f)
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in catalog if m.id}
    assert used == set(translated), (used - set(translated), set(translated) - used)
    for msgid, string in translated.items():
        assert string and all(string), msgid
        placeholders = set(re.findall(r"%\((\w+)\)s", msgid))
        got = string if isinstance(string, str) else string[0]
        assert set(re.findall(r"%\((\w+)\)s", got)) == placeholders, msgid
    assert len(used) > 20
