"""Small pure pieces: bot detection, target URL validation, visitor ids, script loading."""

from __future__ import annotations

import os

import hiredis
import pytest

from app.allocator import scripts
from app.allocator.protocol import Call, ScanCommands
from app.bots import is_bot
from app.errors import InvalidInput
from app.routes.scan import VisitorIds
from app.store import keys
from app.store.fastredis import Script, as_eval
from app.urls import UrlPolicy, check_target_url


@pytest.mark.parametrize(
    "ua,bot",
    [
        (b"facebookexternalhit/1.1", True),
        (b"WhatsApp/2.23.20.0 A", True),
        (b"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
        (b"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", True),
        (b"Sogou web spider/4.0", True),
        (b"Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 Chrome/120 Mobile", False),
        (b"Mozilla/5.0 (iPhone) Mobile/15E148 WhatsApp/2.23.24.76", False),
        (b"Mozilla/5.0 (Linux; Android 13) MicroMessenger/8.0.42.2460 WeChat/arm64", False),
        (b"", False),
    ],
)
def test_is_bot(ua: bytes, bot: bool) -> None:
    assert is_bot(ua) is bot


@pytest.mark.parametrize(
    "url",
    [
        "https://chat.whatsapp.com/AbC123",
        "https://t.me/+AbC123",
        "https://discord.gg/abc",
        "https://weixin.qq.com/g/AbCdEf",
    ],
)
def test_good_target_urls_pass(url: str) -> None:
    assert check_target_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://example.com/",  # http needs a setting
        "//example.com/x",
        "https://user:pass@example.com/",
        "https://example.com@evil.com/",
        "https://@example.com/",
        "https://:pass@example.com/",
        "https://example.com/\r\nSet-Cookie: x=1",
        "https://exa mple.com/",
        "https:///nohost",
        "https://example.com:99999/",
        "ftp://example.com/",
        "https://example.com/" + "a" * 3000,
        "https:\\\\evil.com",
    ],
)
def test_bad_target_urls_are_rejected(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_target_url(url)


def test_url_policy_http_and_allow_list() -> None:
    policy = UrlPolicy(allow_http=True, allowed_hosts=frozenset({"t.me"}))
    assert check_target_url("http://t.me/x", policy) == "http://t.me/x"
    assert check_target_url("https://sub.t.me/x", policy)
    with pytest.raises(InvalidInput):
        check_target_url("https://evil-t.me/x", policy)


def test_non_ascii_urls_become_ascii_for_the_location_header() -> None:
    out = check_target_url("https://例え.jp/群?名=一")
    assert out.isascii() and out.startswith("https://xn--")


def test_visitor_ids_are_random_well_formed_and_survive_refills() -> None:
    ids = VisitorIds()
    got = [ids() for _ in range(3000)]  # 3,000 x 16 bytes crosses two 16 KiB refills
    assert len(set(got)) == len(got)
    assert all(keys.VISITOR_ID_RE.match(v) for v in got)


def test_visitor_ids_differ_in_a_forked_child() -> None:
    ids = VisitorIds()
    ids()  # the buffer is filled before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert keys.VISITOR_ID_RE.match(child) and child != ids()


@pytest.mark.parametrize("function", [False, True])
@pytest.mark.parametrize("fresh", [True, False])
def test_hand_packed_scan_command_matches_hiredis(fresh: bool, function: bool) -> None:
    """The scan's hand-packed call is what hiredis packs: EVALSHA of the script, or FCALL of
    its function; its EVAL twin carries the same keys and arguments."""
    script = Script.from_source("return 1", function="lib_f" if function else "",
                                library="#!lua name=lib_f\n" if function else "")
    vid, p = "abcdefghijklmnopqrstu-", keys.prefix("pool-a")
    call = (b"FCALL", b"lib_f") if function else (b"EVALSHA", script.sha)
    args = (*call, 2, keys.pool("pool-a"), keys.sticky("pool-a", vid), p, vid,
            "", Call.NEW.value if fresh else Call.KNOWN.value)
    packed = ScanCommands(script)("pool-a", vid, fresh)
    assert packed == hiredis.pack_command(args)
    assert as_eval(script, packed) == hiredis.pack_command((b"EVAL", script.body, *args[2:]))
    with pytest.raises(ValueError):
        as_eval(Script.from_source("return 2"), packed)


def test_scripts_carry_a_shebang_only_for_redis_7() -> None:
    assert scripts.source("scan", shebang=True).startswith("#!lua\n")
    assert not scripts.source("scan", shebang=False).startswith("#")
    assert scripts.supports_shebang("7.2.4") and not scripts.supports_shebang("6.2.14")


def test_every_key_of_a_pool_shares_its_hash_tag() -> None:
    pool_keys = [keys.pool("p1"), keys.group("p1", "g"), keys.sticky("p1", "v"), keys.stats("p1"),
                 keys.slots("p1"), *keys.pool_keys("p1")]
    assert all("{p1}" in k and k.index("{") == k.index("{p1}") for k in pool_keys)
