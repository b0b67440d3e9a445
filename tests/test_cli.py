"""The `livecode` commands, run for real against a real Redis (the fixture's, or the embedded
server of a data directory)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import redis
import segno
from click.testing import CliRunner, Result

from app.cli import main
from app.qr import decode_qr_image
from tests.test_serve import serve


def ok(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    return result


def test_pools_and_groups_lifecycle(cli: CliRunner, sync_redis: redis.Redis) -> None:
    created = json.loads(ok(cli, "pools", "create", "spring", "--name", "Spring",
                            "--strategy", "round_robin").output)
    assert created["id"] == "spring" and created["strategy"] == "round_robin"
    ok(cli, "groups", "add", "spring", "https://chat.whatsapp.com/A", "--capacity", "3")
    ok(cli, "groups", "add", "spring", "https://t.me/+B", "--id", "tg", "--mode", "page")
    assert ok(cli, "pools", "list").output.split()[:3] == ["spring", "active", "round_robin"]
    listing = ok(cli, "groups", "list", "spring").output.splitlines()
    assert listing == ["g1  0/3  on       https://chat.whatsapp.com/A",
                       "tg  0/200  on       https://t.me/+B"]
    ok(cli, "groups", "disable", "spring", "tg")
    shown = json.loads(ok(cli, "pools", "show", "spring").output)
    assert [g["enabled"] for g in shown["groups"]] == [True, False]
    assert shown["next_group"] == "g1"
    ok(cli, "groups", "enable", "spring", "tg")
    ok(cli, "pools", "pause", "spring")
    assert sync_redis.hget("lc:{spring}:pool", "status") == b"paused"
    ok(cli, "pools", "resume", "spring")
    ok(cli, "pools", "delete", "spring", "--yes")
    assert not sync_redis.keys("lc:{spring}:*")


def test_errors_are_clear_and_change_nothing(cli: CliRunner, sync_redis: redis.Redis) -> None:
    ok(cli, "pools", "create", "spring")
    before = sorted(sync_redis.keys("*"))
    assert "not_found" in fails(cli, "pools", "show", "nope").output
    assert "scheme" in fails(cli, "groups", "add", "spring", "javascript:alert(1)").output
    assert "conflict" in fails(cli, "pools", "create", "spring").output
    assert "not_found" in fails(cli, "groups", "disable", "spring", "nope").output
    assert "invalid_input" in fails(cli, "pools", "create", "Bad_Id").output
    assert cli.invoke(main, ["groups", "add", "spring"]).exit_code == 2  # usage error
    assert sorted(sync_redis.keys("*")) == before


def test_keys_create_list_revoke(cli: CliRunner, sync_redis: redis.Redis) -> None:
    result = cli.invoke(main, ["keys", "create", "--scope", "read", "--name", "grafana"])
    assert result.exit_code == 0
    secret = result.stdout.strip()
    assert secret.startswith("lc_") and len(secret) > 40
    dump = b"".join(k + b"".join(sync_redis.hvals(k)) for k in sync_redis.keys("lc:{apikeys}:k:*"))
    assert secret.encode() not in dump and secret.split("_")[-1].encode() not in dump
    key_id = secret.split("_")[1]
    assert key_id in ok(cli, "keys", "list").output
    ok(cli, "keys", "revoke", key_id)
    assert key_id not in ok(cli, "keys", "list").output
    fails(cli, "keys", "revoke", key_id)


def test_upload_a_group_qr_image(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli, "pools", "create", "spring")
    image = tmp_path / "group.png"
    buf = io.BytesIO()
    segno.make("https://weixin.qq.com/g/AbC123", error="m").save(buf, kind="png", scale=6)
    image.write_bytes(buf.getvalue())
    group = json.loads(ok(cli, "groups", "upload", "spring", str(image)).output)
    assert group["url"] == "https://weixin.qq.com/g/AbC123"
    assert group["mode"] == "page" and group["expires_at"]
    noise = tmp_path / "noise.png"
    noise.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert "invalid_input" in fails(cli, "groups", "upload", "spring", str(noise)).output


def test_qr_poster_png_and_svg(cli: CliRunner, tmp_path: Path) -> None:
    ok(cli, "pools", "create", "spring")
    ok(cli, "qr", "spring", "-o", "poster.png", "--scale", "6")
    assert decode_qr_image((tmp_path / "poster.png").read_bytes()) == "https://lc.example/s/spring"
    ok(cli, "qr", "spring", "-o", "poster.svg")
    assert (tmp_path / "poster.svg").read_text().lstrip().startswith("<?xml")
    fails(cli, "qr", "nope", "-o", "x.png")


def test_export_import_round_trip(cli: CliRunner, sync_redis: redis.Redis, tmp_path: Path) -> None:
    ok(cli, "pools", "create", "spring", "--strategy", "weighted", "--fallback-url",
       "https://example.com/full")
    ok(cli, "groups", "add", "spring", "https://t.me/+A", "--capacity", "5", "--weight", "3")
    ok(cli, "groups", "add", "spring", "https://t.me/+B", "--capacity", "5")
    sync_redis.hset("lc:{spring}:g:g1", "c", 2)  # as if scanned twice
    ok(cli, "export", "-o", "backup.json")
    before = json.loads(ok(cli, "pools", "show", "spring").output)
    assert "already exist" in fails(cli, "import", "backup.json").output
    sync_redis.flushall()
    ok(cli, "import", "backup.json")
    after = json.loads(ok(cli, "pools", "show", "spring").output)
    for doc in (before, after):
        doc.pop("created_at")
        doc.pop("forecast")  # it moves with the clock
        doc.pop("next_group")  # weighted: one random draw
    assert after == before
    assert after["groups"][0]["count"] == 2 and after["total_remaining"] == 8
    bad = tmp_path / "bad.json"
    bad_pool = {"id": "xyz", "groups": [{"url": "https://t.me/+ok"}, {"url": "data:,x"}]}
    bad.write_text(json.dumps({"version": 1, "pools": [bad_pool]}))
    assert "scheme" in fails(cli, "import", str(bad)).output
    assert not sync_redis.keys("lc:{xyz}:*")


def test_commands_use_the_embedded_store_whether_serve_runs_or_not(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECODE_")}
    env["LIVECODE_DATA_DIR"] = str(tmp_path / "data")

    def livecode(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    assert livecode("pools", "create", "offline").returncode == 0  # no serve: started, stopped
    sock = tmp_path / "data" / "redis.sock"
    with serve("--data-dir", str(tmp_path / "data"), env={}, cwd=tmp_path):
        assert livecode("groups", "add", "offline", "https://t.me/+A").returncode == 0
        listed = livecode("pools", "list")
        assert listed.returncode == 0 and "offline" in listed.stdout
        with redis.Redis(unix_socket_path=str(sock)) as r:  # the same server serve uses
            assert r.exists("lc:{offline}:g:g1")
    missing = livecode("pools", "show", "nope")
    assert missing.returncode == 1 and "not_found" in missing.stderr
