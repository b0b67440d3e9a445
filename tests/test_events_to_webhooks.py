"""From a scan to a receiver: a group fills inside the scan script, the scheduler's dispatcher
puts the event in the feed and hands it to the webhooks, and the deliverer sends it, signed,
to real local receivers (a standard webhook and a WeCom robot), once."""

from __future__ import annotations

import asyncio
import json

from standardwebhooks import Webhook

from app.events.model import EventPublic
from tests.api_helpers import open_api
from tests.webhook_receiver import OK_BODIES, receiving


async def test_a_group_filled_by_scans_reaches_the_webhooks_once(redis_url: str) -> None:
    with receiving() as standard, receiving(OK_BODIES["wecom"]) as wecom:
        async for api in open_api(redis_url, scheduler=True, webhook_allow_private=True,
                                  allow_http_targets=True):
            await api.make_pool("spring", [{"capacity": 2}, {"capacity": 5}],
                                name="春季活动", language="zh-CN")
            hook = await api.ok("POST", "/webhooks", 201, json={
                "url": standard.url(), "format": "standard", "events": ["group.full"]})
            await api.ok("POST", "/webhooks", 201, json={
                "url": wecom.url("/cgi-bin/webhook/send?key=KEY"), "format": "wecom",
                "events": ["group.full"], "pools": ["spring"]})
            for _ in range(3):  # the second scan fills g1
                await api.scan("spring")
            signed, chat = await standard.arrived(1, within=15), await wecom.arrived(1, within=15)
            await asyncio.sleep(1.5)  # more dispatcher rounds: still once
            assert standard.count() == 1 and wecom.count() == 1
            r = signed[0]
            payload = Webhook(hook["secret"]).verify(r.body, r.headers)
            event = EventPublic.model_validate(payload["data"])
            assert (event.type, event.pool_id, event.group_id) == ("group.full", "spring", "g1")
            assert event.data == {"capacity": 2, "count": 2}
            assert r.headers["webhook-id"] == event.id
            text = chat[0].json()["text"]["content"]
            assert "春季活动" in text and "g1" in text
            # the feed has it once, with the pool's name
            page = await api.ok("GET", "/events", params={"type": "group.full"})
            assert [(e["id"], e["pool_name"]) for e in page["items"]] == [(event.id, "春季活动")]
            assert json.loads(json.dumps(page["items"][0]["data"])) == {"capacity": 2, "count": 2}
