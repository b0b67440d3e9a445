"""The CLI as a first-time operator meets it: every command answers bad input with one clean
line and exit 1 (nothing stored changes), the commands the README's curl walk-through uses
(update, reset, delete, reorder, replace a group's code; update a pool), channel posters, keys
revoked by the key they printed, and which Redis was asked when a pool is not there."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
import segno
from click.testing import CliRunner, Result

from app.cli import main
from app.embedded import RedisProcess
from app.errors import NotFound
from app.qr import decode_qr_image
from app.store.apikeys import ApiKeyStore

WECHAT_NEW = "https://weixin.qq.com/g/NeWcOdE42"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """Clears LIVECODE_*, works in tmp_path; returns a setter of the Redis URL."""
    for name in list(os.environ):
        if name.startswith("LIVECODE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LIVECODE_PUBLIC_URL", "https://lc.example")
    monkeypatch.chdir(tmp_path)
    return lambda url: monkeypatch.setenv("LIVECODE_REDIS_URL", url)


@pytest.fixture
def cli(redis_url: str, env: Callable[[str], None]) -> CliRunner:
    env(redis_url)
    return CliRunner()


def ok(cli: CliRunner, *args: str, input: str | None = None) -> Result:
    result = cli.invoke(main, list(args), catch_exceptions=False, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def png(data: str, path: Path) -> Path:
    buf = io.BytesIO()
    segno.make(data, error="m").save(buf, kind="png", scale=6)
    path.write_bytes(buf.getvalue())
    return path


def stored(r: redis.Redis) -> dict[bytes, tuple[bytes | None, int]]:
    return {k: (r.dump(k), r.ttl(k)) for k in r.keys("*")}


@pytest.fixture
def spring(cli: CliRunner, tmp_path: Path) -> Path:
    """Pool `spring` with g1 (https://t.me/+A) and g2 (https://t.me/+B); images and bad files
    in tmp_path."""
    ok(cli, "pools", "create", "spring")
    ok(cli, "groups", "add", "spring", "https://t.me/+A")
    ok(cli, "groups", "add", "spring", "https://t.me/+B")
    png("https://t.me/+Q", tmp_path / "qr.png")
    (tmp_path / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad-export.json").write_text(json.dumps({"version": 1, "pools": [
        {"id": "xyz", "groups": [{"url": "https://t.me/+ok", "capacity": 0}]}]}))
    (tmp_path / "dup-export.json").write_text(json.dumps({"version": 1, "pools": [
        {"id": "spring", "groups": [{"url": "https://t.me/+ok"}, {"url": "https://t.me/+ok"}]}]}))
    return tmp_path


BAD_INPUT: list[tuple[list[str], dict[str, str]]] = [
    (["serve", "--workers", "0"], {}),
    (["serve", "--port", "abc"], {}),
    (["demo"], {"LIVECODE_DEADLINE_MS": "5"}),
    (["keys", "create", "--scope", "admin", "--name", "n" * 101], {}),
    (["keys", "create", "--scope", "root"], {}),
    (["keys", "list"], {"LIVECODE_ADMIN_TIMEOUT_MS": "soon"}),
    (["keys", "revoke", "nope"], {}),
    (["keys", "revoke", "lc_0123abcd_" + "x" * 43], {}),
    (["pools", "list"], {"LIVECODE_WORKERS": "0"}),
    (["pools", "create", "Bad_Id"], {}),
    (["pools", "create", "new-pool", "--sticky-ttl", "5"], {}),
    (["pools", "create", "new-pool", "--fallback-url", "javascript:alert(1)"], {}),
    (["pools", "create", "new-pool", "--strategy", "nope"], {}),
    (["pools", "show", "nope"], {}),
    (["pools", "pause", "nope"], {}),
    (["pools", "resume", "nope"], {}),
    (["pools", "delete", "nope", "--yes"], {}),
    (["pools", "update", "spring", "--sticky-ttl", "1"], {}),
    (["pools", "update", "spring", "--valid-from", "next friday"], {}),
    (["pools", "update", "spring", "--valid-from", "2030-01-02", "--valid-until", "2030-01-01"],
     {}),
    (["pools", "update", "spring"], {}),
    (["pools", "update", "nope", "--name", "x"], {}),
    (["groups", "add", "spring", "https://t.me/+new", "--capacity", "0"], {}),
    (["groups", "add", "spring", "https://t.me/+new", "--weight", "-1"], {}),
    (["groups", "add", "spring", "https://t.me/+new", "--id", "bad id"], {}),
    (["groups", "add", "spring", "https://t.me/+new", "--expires-at", "next friday"], {}),
    (["groups", "add", "spring", "https://t.me/+new", "--capacity", "abc"], {}),
    (["groups", "add", "spring", "javascript:alert(1)"], {}),
    (["groups", "add", "spring", "https://t.me/+A"], {}),
    (["groups", "add", "nope", "https://t.me/+new"], {}),
    (["groups", "upload", "spring", "noise.png"], {}),
    (["groups", "upload", "spring", "qr.png", "--capacity", "0"], {}),
    (["groups", "upload", "spring", "missing.png"], {}),
    (["groups", "list", "nope"], {}),
    (["groups", "disable", "spring", "nope"], {}),
    (["groups", "enable", "spring", "nope"], {}),
    (["groups", "update", "spring", "g1", "--capacity", "0"], {}),
    (["groups", "update", "spring", "g1", "--url", "not a url"], {}),
    (["groups", "update", "spring", "g1", "--expires-at", "next friday"], {}),
    (["groups", "update", "spring", "g1", "--mode", "sideways"], {}),
    (["groups", "update", "spring", "g1"], {}),
    (["groups", "update", "spring", "g1", "--url", "https://t.me/+B"], {}),
    (["groups", "update", "spring", "nope", "--capacity", "5"], {}),
    (["groups", "replace", "spring", "g1"], {}),
    (["groups", "replace", "spring", "g1", "https://t.me/+Z", "--image", "qr.png"], {}),
    (["groups", "replace", "spring", "g1", "javascript:alert(1)"], {}),
    (["groups", "replace", "spring", "g1", "--image", "noise.png"], {}),
    (["groups", "replace", "spring", "g1", "https://t.me/+Z", "--expires-at", "soon"], {}),
    (["groups", "replace", "spring", "g1", "https://t.me/+B"], {}),
    (["groups", "replace", "spring", "nope", "https://t.me/+Z"], {}),
    (["groups", "reset", "spring", "nope"], {}),
    (["groups", "delete", "spring", "nope", "--yes"], {}),
    (["groups", "reorder", "spring", "g1", "g1"], {}),
    (["groups", "reorder", "spring", "g1"], {}),
    (["qr", "spring", "-o", "x.png", "--scale", "0"], {}),
    (["qr", "spring", "-o", "x.png", "--channel", "bad ch"], {}),
    (["qr", "spring", "-o", "x.png", "--error", "z"], {}),
    (["qr", "nope", "-o", "x.png"], {}),
    (["qr", "spring", "-o", "no/such/dir/x.png"], {}),
    (["export", "-o", "no/such/dir/x.json"], {}),
    (["import", "missing.json"], {}),
    (["import", "bad.json"], {}),
    (["import", "bad-export.json"], {}),
    (["import", "dup-export.json", "--replace"], {}),  # refused before spring is deleted
    (["webhooks", "add", "ftp://example.com/x"], {}),
    (["webhooks", "add", "https://example.com/x", "--format", "teams"], {}),
    (["webhooks", "list"], {"LIVECODE_ADMIN_TIMEOUT_MS": "soon"}),
    (["webhooks", "show", "wh_000000000000"], {}),
    (["webhooks", "update", "nope", "--name", "x"], {}),
    (["webhooks", "delete", "nope"], {}),
    (["webhooks", "test", "nope"], {}),
    (["webhooks", "deliveries", "nope"], {}),
    (["webhooks", "redeliver", "nope", "dl_nope"], {}),
    (["webhooks", "dead-letters", "--limit", "0"], {}),
    (["stats", "nope"], {}),
    (["stats", "spring", "--from", "yesterday"], {}),
    (["stats", "spring", "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"], {}),
    (["events", "list", "--pool", "nope"], {}),
    (["events", "list", "--limit", "0"], {}),
    (["events", "tail", "--pool", "nope", "--count", "1"], {}),
]


@pytest.mark.parametrize(("args", "extra_env"), BAD_INPUT,
                         ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_is_one_clean_line_and_exit_1(
    cli: CliRunner, spring: Path, sync_redis: redis.Redis, args: list[str],
    extra_env: dict[str, str],
) -> None:
    before = stored(sync_redis)
    result = cli.invoke(main, args, env=extra_env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("Error: ") and len(line) > len("Error: ") + 5, line
    assert "Traceback" not in line and '{"' not in line and "[{" not in line, line
    assert result.stdout == "", result.stdout
    assert stored(sync_redis) == before
    assert not (spring / "x.png").exists()


def test_the_table_covers_every_command() -> None:
    """Each command of `livecode --help` and its groups has a row above."""
    grouped = ("keys", "pools", "groups", "events", "webhooks")
    covered = {tuple(a[:2]) if a[0] in grouped else (a[0],) for a, _ in BAD_INPUT}
    commands = set()
    for name, command in main.commands.items():
        sub = getattr(command, "commands", None)
        commands |= {(name, s) for s in sub} if sub else {(name,)}
    assert commands <= covered, sorted(commands - covered)


def test_validation_errors_read_as_field_and_problem(cli: CliRunner, spring: Path) -> None:
    result = cli.invoke(main, ["groups", "add", "spring", "https://t.me/+n", "--capacity", "0"])
    assert result.stderr.strip() == (
        "Error: invalid_input: capacity: Input should be greater than or equal to 1")
    result = cli.invoke(main, ["groups", "add", "spring", "https://t.me/+A"])
    assert result.stderr.strip() == (
        "Error: conflict: group 'g1' already has the URL https://t.me/+A")


# --- the commands of the curl walk-through --------------------------------------------------


def test_groups_update_reset_delete_reorder(cli: CliRunner, spring: Path,
                                            sync_redis: redis.Redis) -> None:
    sync_redis.hset("lc:{spring}:g:g1", "c", 3)  # as if scanned three times
    g = json.loads(ok(cli, "groups", "update", "spring", "g1", "--capacity", "300", "--name",
                      "WA 1", "--weight", "4", "--mode", "page", "--disable").stdout)
    assert (g["capacity"], g["name"], g["weight"], g["mode"], g["enabled"], g["count"]) == (
        300, "WA 1", 4, "page", False, 3)
    g = json.loads(ok(cli, "groups", "update", "spring", "g1", "--enable", "--mode", "pool",
                      "--expires-at", "2031-01-02T03:04:05Z", "--url",
                      "https://t.me/+A2").stdout)
    assert (g["enabled"], g.get("mode"), g["url"], g["count"], g["position"]) == (
        True, None, "https://t.me/+A2", 3, 1)
    assert g["expires_at"].startswith("2031-01-02T03:04:05")
    g = json.loads(ok(cli, "groups", "update", "spring", "g1", "--expires-at", "never").stdout)
    assert "expires_at" not in g  # the JSON leaves out what is not set

    assert ok(cli, "groups", "reset", "spring", "g1").stdout == "g1 reset: 0/300\n"
    assert json.loads(ok(cli, "groups", "reset", "spring", "g1", "--json").stdout)["count"] == 0

    listed = ok(cli, "groups", "reorder", "spring", "g2", "g1").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ["g2", "g1"]
    as_json = json.loads(ok(cli, "groups", "reorder", "spring", "g1", "g2", "--json").stdout)
    assert [x["id"] for x in as_json] == ["g1", "g2"]

    declined = cli.invoke(main, ["groups", "delete", "spring", "g2"], input="n\n")
    assert declined.exit_code == 1 and sync_redis.exists("lc:{spring}:g:g2")
    assert ok(cli, "groups", "delete", "spring", "g2", input="y\n").stdout.endswith(
        "g2 deleted\n")
    ok(cli, "groups", "delete", "spring", "g1", "--yes")
    assert json.loads(ok(cli, "groups", "list", "spring", "--json").stdout) == []


def test_groups_replace_keeps_id_count_and_place(cli: CliRunner, spring: Path,
                                                 sync_redis: redis.Redis) -> None:
    sync_redis.hset("lc:{spring}:g:g2", "c", 7)
    g = json.loads(ok(cli, "groups", "replace", "spring", "g2", "https://t.me/+B2").stdout)
    assert (g["id"], g["url"], g["count"], g["position"]) == ("g2", "https://t.me/+B2", 7, 2)
    image = png(WECHAT_NEW, spring / "wechat.png")
    g = json.loads(ok(cli, "groups", "replace", "spring", "g2", "--image", str(image)).stdout)
    assert (g["url"], g["count"], g["position"], g["mode"]) == (WECHAT_NEW, 7, 2, "page")
    expires = datetime.fromisoformat(g["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    g = json.loads(ok(cli, "groups", "replace", "spring", "g1", "https://t.me/+A2",
                      "--expires-at", "2031-05-04T00:00:00Z").stdout)
    assert g["expires_at"].startswith("2031-05-04")


def test_pools_update(cli: CliRunner, spring: Path) -> None:
    p = json.loads(ok(cli, "pools", "update", "spring", "--name", "Spring", "--strategy",
                      "weighted", "--mode", "page", "--sticky-ttl", "3600", "--valid-from",
                      "2030-01-01T00:00:00Z", "--valid-until", "2030-02-01T00:00:00Z",
                      "--fallback-message", "Full", "--fallback-contact",
                      "https://work.weixin.qq.com/u/abc").stdout)
    assert (p["name"], p["strategy"], p["mode"], p["sticky_ttl_s"]) == (
        "Spring", "weighted", "page", 3600)
    assert p["valid_from"].startswith("2030-01-01") and p["valid_until"].startswith("2030-02-01")
    assert p["fallback"] == {"message": "Full", "contact_url": "https://work.weixin.qq.com/u/abc"}
    p = json.loads(ok(cli, "pools", "update", "spring", "--valid-from", "never",
                      "--valid-until", "never", "--fallback-url",
                      "https://example.com/full").stdout)
    assert "valid_from" not in p and "valid_until" not in p
    assert p["fallback"] == {"url": "https://example.com/full"}


def test_qr_of_a_channel(cli: CliRunner, spring: Path) -> None:
    ok(cli, "qr", "spring", "-o", "poster.png", "--scale", "6", "--channel", "poster-a")
    assert decode_qr_image((spring / "poster.png").read_bytes()) == (
        "https://lc.example/s/spring?ch=poster-a")


def test_keys_revoke_takes_the_full_key(cli: CliRunner, sync_redis: redis.Redis) -> None:
    key = ok(cli, "keys", "create", "--scope", "read").stdout.strip()
    key_id = key.split("_")[1]
    result = ok(cli, "keys", "revoke", key)
    assert result.stdout == f"revoked {key_id}\n" and key not in result.stdout
    assert not sync_redis.exists(f"lc:{{apikeys}}:k:{key_id}")
    gone = cli.invoke(main, ["keys", "revoke", key])
    assert gone.exit_code == 1 and key not in gone.stderr and key_id in gone.stderr


# --- which Redis was asked -----------------------------------------------------------------


@pytest.fixture
def locked_redis(make_redis: Callable[..., RedisProcess]) -> Iterator[str]:
    server = make_redis(appendonly=False)
    with server.client() as c:
        c.config_set("requirepass", "s3cret-pw")
    yield f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"


def test_the_redis_asked_is_named_without_its_password(
    locked_redis: str, env: Callable[[str], None]
) -> None:
    env(locked_redis)
    cli = CliRunner()
    shown = locked_redis.replace(":s3cret-pw@", "")
    listed = ok(cli, "pools", "list")
    assert listed.stderr == f"no pools in {shown}\n" and "s3cret" not in listed.stderr
    assert f"no pools in {shown}" in ok(cli, "export").stderr
    for args in (["pools", "show", "nope"], ["groups", "list", "nope"],
                 ["groups", "add", "nope", "https://t.me/+A"], ["qr", "nope", "-o", "x.png"]):
        result = cli.invoke(main, args)
        assert result.exit_code == 1
        assert result.stderr.strip() == f"Error: not_found: pool 'nope' not found (in {shown})"


def test_the_data_directory_asked_is_named(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIVECODE_")}
    run = subprocess.run([sys.executable, "-m", "app.cli", "pools", "list"], env=environ,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    data = (tmp_path / "livecode-data").resolve()
    assert run.stderr == f"no pools in the embedded Redis of data directory {data}\n"


async def test_the_store_takes_a_key_by_id_or_in_full(redis_url: str) -> None:
    """The console's revoke and anything else that takes a key id go through the same store."""
    client = aredis.Redis.from_url(redis_url)
    try:
        store = ApiKeyStore(client)
        public, key = await store.create("read", "k")
        assert (await store.get(key)).id == (await store.get(public.id)).id == public.id
        await store.revoke(key)
        with pytest.raises(NotFound) as missing:
            await store.get(key)
        assert key not in missing.value.message and public.id in missing.value.message
        with pytest.raises(NotFound) as mistyped:
            await store.revoke(key[:-3])  # a key cut short is not repeated back either
        assert key[:-3] not in mistyped.value.message
    finally:
        await client.aclose()
