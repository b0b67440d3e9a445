"""/api/v1/webhooks and `livecode webhooks`, end to end: the app (with its lifespan's
deliverer) on a real Redis, real API keys, real receivers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aredis
from asgi_lifespan import LifespanManager
from click.testing import CliRunner, Result
from standardwebhooks import Webhook

from app.cli import main
from app.main import create_app
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from app.webhooks.deliverer import enqueue
from app.webhooks.store import delivery_id
from tests.api_helpers import BASE, Api, assert_error, unchanged
from tests.webhook_helpers import FAST, event, eventually
from tests.webhook_receiver import OK_BODIES, Receiver

W = "/webhooks"


@asynccontextmanager
async def _open(redis_url: str, **overrides: Any) -> AsyncIterator[Api]:
    app = create_app(Settings(redis_url=redis_url, **{**FAST, **overrides}))
    client = aredis.Redis.from_url(redis_url)
    _, admin = await ApiKeyStore(client).create("admin", "test admin")
    _, read = await ApiKeyStore(client).create("read", "test read")
    try:
        async with LifespanManager(app) as manager:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                api = Api(http, transport, client, admin, read)
                for key in ("admin", "read"):  # stamp last_used now: snapshots stay still
                    assert (await api.call("GET", W, key=key)).status_code == 200
                yield api
    finally:
        await client.aclose()


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[Api]:
    async with _open(redis_url) as a:
        yield a


@pytest.fixture
async def strict_api(redis_url: str) -> AsyncIterator[Api]:
    """LIVECODE_WEBHOOK_ALLOW_PRIVATE off: the production default."""
    async with _open(redis_url, webhook_allow_private=False) as a:
        yield a


async def test_create_shows_the_standard_secret_once(api: Api, rx: Receiver) -> None:
    created = await api.ok("POST", W, 201, json={"url": rx.url(), "name": "ops"})
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert created["format"] == "standard" and created["has_secret"] is True
    assert created["events"] is None and created["pools"] is None and created["enabled"]
    wid = created["id"]
    assert (await api.ok("GET", f"{W}/{wid}"))["secret"] is None
    assert (await api.ok("GET", f"{W}/{wid}", key="read"))["secret"] is None
    assert all(w["secret"] is None for w in (await api.ok("GET", W))["items"])
    patched = await api.ok("PATCH", f"{W}/{wid}", json={"name": "ops 2"})
    assert patched["secret"] is None and patched["has_secret"]
    assert secret not in json.dumps(await api.ok("GET", f"{W}/{wid}/deliveries"))
    # the secret shown is the one it signs with
    await enqueue(api.redis, event(), "en")
    (req,) = await rx.arrived(1)
    Webhook(secret).verify(req.body, req.headers)


async def test_secret_rotation_and_format_change(api: Api, rx: Receiver) -> None:
    wid = (await api.ok("POST", W, 201, json={"url": rx.url()}))["id"]
    rotated = await api.ok("PATCH", f"{W}/{wid}", json={"secret": None})
    assert rotated["secret"].startswith("whsec_")
    mine = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert (await api.ok("PATCH", f"{W}/{wid}", json={"secret": mine}))["secret"] is None
    to_ding = await api.ok("PATCH", f"{W}/{wid}", json={"format": "dingtalk"})
    assert to_ding["has_secret"] is False and to_ding["secret"] is None  # not DingTalk's secret
    signed = await api.ok("PATCH", f"{W}/{wid}", json={"secret": "SECabc"})
    assert signed["has_secret"] and signed["secret"] is None
    back = await api.ok("PATCH", f"{W}/{wid}", json={"format": "standard"})
    assert back["secret"].startswith("whsec_") and back["secret"] != rotated["secret"]


async def test_list_get_update_delete(api: Api, rx: Receiver) -> None:
    body = {"url": rx.url("/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"),
            "format": "wecom", "events": ["pool.low", "group.full", "pool.low"],
            "pools": ["spring"], "name": "群机器人"}
    created = await api.ok("POST", W, 201, json=body)
    wid = created["id"]
    assert created["url"] == rx.url("/cgi-bin/webhook/send?key=****5aaa")
    assert created["events"] == ["pool.low", "group.full"]  # duplicates dropped
    assert created["secret"] is None and created["has_secret"] is False
    slack = await api.ok("POST", W, 201, json={
        "url": rx.url("/services/T0001/B0001/abcdefghijklmnopqrstuvwx"), "format": "slack"})
    assert slack["url"] == rx.url("/services/T0001/B0001/****uvwx")
    listed = (await api.ok("GET", W, key="read"))["items"]
    assert [w["id"] for w in listed] == [wid, slack["id"]]
    changed = await api.ok("PATCH", f"{W}/{wid}", json={"events": None, "enabled": False})
    assert changed["events"] is None and changed["enabled"] is False
    assert changed["pools"] == ["spring"] and changed["name"] == "群机器人"
    assert (await api.ok("GET", f"{W}/{wid}")) == changed
    await api.ok("DELETE", f"{W}/{wid}", 204)
    assert_error(await api.call("GET", f"{W}/{wid}"), 404, "not_found")
    assert_error(await api.call("DELETE", f"{W}/{wid}"), 404, "not_found")


async def test_auth(api: Api, rx: Receiver) -> None:
    wid = (await api.ok("POST", W, 201, json={"url": rx.url()}))["id"]
    reads = [W, f"{W}/{wid}", f"{W}/{wid}/deliveries", f"{W}/dead-letters"]
    changes = [("POST", W, {"url": rx.url()}), ("PATCH", f"{W}/{wid}", {"name": "x"}),
               ("DELETE", f"{W}/{wid}", None), ("POST", f"{W}/{wid}/test", None),
               ("POST", f"{W}/{wid}/deliveries/dl_{'0' * 24}/redeliver", None)]
    async with unchanged(api.redis):
        for path in reads:
            assert_error(await api.call("GET", path, key=None), 401, "unauthorized")
            assert_error(await api.call("GET", path, key="Bearer lc_nope"), 401)
            assert (await api.call("GET", path, key="read")).status_code == 200
        for method, path, body in changes:
            assert_error(await api.call(method, path, key=None, json=body), 401)
            assert_error(await api.call(method, path, key="read", json=body), 403, "forbidden")
        # a bad body from a read key is still a 403, not a 422
        assert_error(await api.call("POST", W, key="read", json={"url": 1}), 403)
    assert rx.count() == 0  # the refused test sent nothing


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/hook"}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "https://user:pw@example.com/"}, "url"),
    ({"url": "https://example.com/a b"}, "url"),
    ({"url": "https://8.8.8.8/hook", "events": ["pool.nope"]}, "events"),
    ({"url": "https://8.8.8.8/hook", "events": []}, "events"),
    ({"url": "https://8.8.8.8/hook", "format": "teams"}, "format"),
    ({"url": "https://8.8.8.8/hook", "pools": ["Bad_Id"]}, "pools"),
    ({"url": "https://8.8.8.8/hook", "format": "wecom", "secret": "x"}, "secret"),
    ({"url": "https://8.8.8.8/hook", "format": "slack", "secret": "x"}, "secret"),
    ({"url": "https://8.8.8.8/hook", "secret": "whsec_c2hvcnQ="}, "secret"),
    ({"url": "https://8.8.8.8/hook", "secret": "not-whsec"}, "secret"),
    ({"url": "https://8.8.8.8/hook", "format": "dingtalk", "secret": "has space"}, "secret"),
    ({"url": "https://8.8.8.8/hook", "colour": "red"}, "colour"),
    ({"url": "https://8.8.8.8/hook", "enabled": 1}, "enabled"),  # a number is not a boolean
    ({}, "url"),
])
async def test_invalid_input_is_422_and_changes_nothing(
        api: Api, body: dict[str, Any], field: str) -> None:
    async with unchanged(api.redis):
        error = assert_error(await api.call("POST", W, json=body), 422, "invalid_input")
    assert field in json.dumps(error), error


PRIVATE = [
    "https://127.0.0.1/hook", "https://localhost/hook", "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook", "https://10.1.2.3/hook", "https://192.168.1.10/hook",
    "https://172.16.0.1/hook", "https://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/hook", "https://[fd00::1]/hook", "https://224.0.0.1/hook",
    "https://0.0.0.0/hook", "https://[::]/hook", "https://255.255.255.255/hook",
    "https://100.64.0.1/hook", "https://[2002:7f00:1::]/hook", "https://[64:ff9b::a00:1]/hook",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_private_targets_are_refused(strict_api: Api, url: str) -> None:
    async with unchanged(strict_api.redis):
        error = assert_error(await strict_api.call("POST", W, json={"url": url}), 422)
    assert "address" in error["message"] and "LIVECODE_WEBHOOK_ALLOW_PRIVATE" in error["message"]


async def test_public_https_targets_pass_and_http_needs_the_setting(strict_api: Api) -> None:
    for url in ("https://8.8.8.8/hook", "https://[2001:4860:4860::8888]/hook"):
        await strict_api.ok("POST", W, 201, json={"url": url})
    error = assert_error(await strict_api.call("POST", W, json={"url": "http://8.8.8.8/"}), 422)
    assert "scheme" in error["message"]
    unresolvable = {"url": "https://no-such-host.invalid/hook"}
    assert "does not resolve" in assert_error(
        await strict_api.call("POST", W, json=unresolvable), 422)["message"]
    wid = (await strict_api.ok("GET", W))["items"][0]["id"]
    async with unchanged(strict_api.redis):
        assert_error(await strict_api.call(
            "PATCH", f"{W}/{wid}", json={"url": "https://127.0.0.1/x"}), 422)


async def test_not_found(api: Api, rx: Receiver) -> None:
    wid = (await api.ok("POST", W, 201, json={"url": rx.url()}))["id"]
    other = (await api.ok("POST", W, 201, json={"url": rx.url()}))["id"]
    ev = event()
    await enqueue(api.redis, ev, "en")
    did = delivery_id(wid, ev.id)
    assert (await api.ok("GET", f"{W}/{wid}/deliveries"))["items"][0]["id"] == did
    for method, path in [
        ("GET", f"{W}/wh_000000000000"), ("GET", f"{W}/nope"), ("GET", f"{W}/{{x}}"),
        ("PATCH", f"{W}/wh_000000000000"), ("DELETE", f"{W}/nope"),
        ("POST", f"{W}/wh_000000000000/test"), ("GET", f"{W}/nope/deliveries"),
        ("POST", f"{W}/{wid}/deliveries/dl_{'0' * 24}/redeliver"),
        ("POST", f"{W}/{wid}/deliveries/nope/redeliver"),
        ("POST", f"{W}/{other}/deliveries/{did}/redeliver"),  # not this webhook's
    ]:
        kwargs = {"json": {"name": "x"}} if method == "PATCH" else {}
        assert_error(await api.call(method, path, **kwargs), 404, "not_found")


async def test_test_endpoint_sends_once_and_reports_the_attempt(api: Api, rx: Receiver) -> None:
    rx.ok_body = OK_BODIES["feishu"]
    wid = (await api.ok("POST", W, 201, json={
        "url": rx.url("/open-apis/bot/v2/hook/abc"), "format": "feishu", "enabled": False}))["id"]
    attempt = await api.ok("POST", f"{W}/{wid}/test?language=zh-CN")
    assert attempt["ok"] is True and attempt["status"] == 200 and attempt["error"] is None
    assert isinstance(attempt["latency_ms"], int) and attempt["latency_ms"] >= 0
    assert rx.requests[0].json() == {
        "msg_type": "text", "content": {"text": f"[livecode] 测试消息: webhook {wid} 工作正常"}}
    rx.fail_next(1, "errcode", {"code": 19021, "msg": "sign match fail or timestamp is not "
                                "within one hour from current time"})
    failed = await api.ok("POST", f"{W}/{wid}/test")
    assert failed["ok"] is False and failed["status"] == 200
    assert failed["error"].startswith("code 19021: sign match fail")
    assert rx.count() == 2  # once each: no retries
    assert (await api.ok("GET", f"{W}/{wid}/deliveries"))["items"] == []  # not recorded
    assert_error(await api.call("POST", f"{W}/{wid}/test?language=fr"), 422)


async def test_standard_test_event(api: Api, rx: Receiver) -> None:
    created = await api.ok("POST", W, 201, json={"url": rx.url()})
    await api.ok("POST", f"{W}/{created['id']}/test")
    (req,) = rx.requests
    payload = Webhook(created["secret"]).verify(req.body, req.headers)
    assert payload["type"] == "webhook.test" and payload["data"]["type"] == "webhook.test"
    assert payload["data"]["id"] == req.headers["webhook-id"]


async def test_the_app_delivers_and_lists_deliveries_and_dead_letters(
        redis_url: str, rx: Receiver) -> None:
    async with _open(redis_url, webhook_max_age_s=0.5, webhook_retry_base_s=0.05) as api:
        wid = (await api.ok("POST", W, 201, json={"url": rx.url()}))["id"]
        ok_event, bad_event = event(), event("pool.exhausted")
        await enqueue(api.redis, ok_event, "en")
        await rx.arrived(1)  # the lifespan's deliverer sent it
        rx.fail_next(1000, "status", 503)
        await enqueue(api.redis, bad_event, "en")

        async def dead() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await api.ok("GET", f"{W}/dead-letters"))["items"]
            return items

        (letter,) = await eventually(dead, 10, "a dead letter")
        assert letter["webhook_id"] == wid and letter["event"]["id"] == bad_event.id
        assert letter["status"] == "dead" and letter["attempts"][0]["status"] == 503
        listed = (await api.ok("GET", f"{W}/{wid}/deliveries", key="read"))["items"]
        assert [d["event"]["id"] for d in listed] == [bad_event.id, ok_event.id]  # newest first
        only = (await api.ok("GET", f"{W}/{wid}/deliveries?status=delivered&limit=5"))["items"]
        assert [d["event"]["id"] for d in only] == [ok_event.id]
        assert_error(await api.call("GET", f"{W}/{wid}/deliveries?status=lost"), 422)
        assert_error(await api.call("GET", f"{W}/{wid}/deliveries?limit=0"), 422)
        rx.plans.clear()
        again = await api.ok("POST", f"{W}/{wid}/deliveries/{letter['id']}/redeliver")
        assert again["status"] == "pending"

        async def delivered() -> bool:
            d = await api.ok("GET", f"{W}/{wid}/deliveries?status=delivered")
            return len(d["items"]) == 2

        await eventually(delivered, 10, "the redelivery")
        assert (await api.ok("GET", f"{W}/dead-letters"))["items"] == []


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("LIVECODE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LIVECODE_REDIS_URL", redis_url)
    monkeypatch.setenv("LIVECODE_WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def ok(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(main, ["webhooks", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(main, ["webhooks", *args])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    return result.output


def test_cli_lifecycle(cli: CliRunner, rx: Receiver, sync_redis: redis.Redis) -> None:
    rx.ok_body = OK_BODIES["dingtalk"]
    created = json.loads(ok(cli, "add", rx.url("/robot/send?access_token=abcdefghijklmnopqrstu"),
                            "--format", "dingtalk", "--events", "pool.low,group.full",
                            "--pools", "spring", "--name", "钉钉", "--secret", "SECxyz").output)
    wid = created["id"]
    assert created["events"] == ["pool.low", "group.full"] and created["pools"] == ["spring"]
    assert created["has_secret"] and "secret" not in created
    assert created["url"].endswith("/robot/send?access_token=****rstu")
    line = ok(cli, "list").output.strip()
    assert line.startswith(f"{wid}  dingtalk  on   pending 0  ") and line.endswith("钉钉")
    assert json.loads(ok(cli, "show", wid).output)["name"] == "钉钉"
    updated = json.loads(ok(cli, "update", wid, "--events", "all", "--disable").output)
    assert "events" not in updated and updated["enabled"] is False
    attempt = json.loads(ok(cli, "test", wid, "--language", "zh-CN").output)
    assert attempt["ok"] is True and rx.count() == 1
    assert rx.requests[0].json()["text"]["content"].startswith("[livecode] 测试消息")
    std = json.loads(ok(cli, "add", rx.url("/std")).output)
    assert std["secret"].startswith("whsec_")
    assert json.loads(ok(cli, "deliveries", wid).output) == []
    assert json.loads(ok(cli, "dead-letters").output) == []
    assert ok(cli, "delete", wid).output.strip() == f"{wid} deleted"
    assert not sync_redis.keys(f"lc:{{webhooks}}:*{wid}*")


def test_cli_redeliver(cli: CliRunner, rx: Receiver, redis_url: str) -> None:
    import asyncio

    wid = json.loads(ok(cli, "add", rx.url()).output)["id"]

    async def enqueue_one() -> str:
        client = aredis.Redis.from_url(redis_url)
        try:
            return (await enqueue(client, event(), "en"))[0]
        finally:
            await client.aclose()

    did = asyncio.run(enqueue_one())
    (pending,) = json.loads(ok(cli, "deliveries", wid, "--status", "pending").output)
    assert pending["id"] == did and pending["attempts"] == []
    assert ok(cli, "redeliver", wid, did).output.strip() == f"{did} queued (pending)"


def test_cli_bad_input_is_one_line_and_exit_1(
        cli: CliRunner, rx: Receiver, sync_redis: redis.Redis) -> None:
    wid = json.loads(ok(cli, "add", rx.url()).output)["id"]
    before = sorted(sync_redis.keys("*"))
    assert "scheme" in fails(cli, "add", "ftp://example.com/x")
    assert "invalid_input" in fails(cli, "add", rx.url(), "--events", "pool.nope")
    assert "invalid_input" in fails(cli, "add", rx.url(), "--pools", "Bad_Id")
    assert "no secret" in fails(cli, "add", rx.url(), "--format", "wecom", "--secret", "x")
    assert "not_found" in fails(cli, "show", "wh_000000000000")
    assert "not_found" in fails(cli, "update", "nope", "--name", "x")
    assert "not_found" in fails(cli, "delete", "nope")
    assert "not_found" in fails(cli, "redeliver", wid, "dl_nope")
    assert "not_found" in fails(cli, "deliveries", "nope")
    assert sorted(sync_redis.keys("*")) == before
    bad_choice = cli.invoke(main, ["webhooks", "add", rx.url(), "--format", "teams"])
    assert bad_choice.exit_code == 1 and len(bad_choice.output.strip().splitlines()) == 1
    rx.fail_next(1, "status", 500)
    result = cli.invoke(main, ["webhooks", "test", wid])
    assert result.exit_code == 1 and "the test failed: HTTP 500" in result.output


def test_cli_refuses_private_targets_without_the_setting(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECODE_WEBHOOK_ALLOW_PRIVATE", "false")
    out = fails(cli, "add", "https://localhost/hook")
    assert "localhost resolves to 127.0.0.1, which is a loopback address" in out
