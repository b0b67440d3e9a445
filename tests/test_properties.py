"""Property-based tests (hypothesis): target URL validation, and the pool/group lifecycle as a
state machine checked against a Python model, on a real Redis through the store layer and the real
scan script.

The bugs these properties found (in app/urls.py: percent-encoded hosts, the length limit checked
before encoding, IPv6 brackets lost, lone surrogates raising UnicodeEncodeError, Unicode spaces
and controls accepted, the allow-list compared before IDNA; in app/store/pools.py: a fallback URL
stored unvalidated, a refused add_groups leaving a pool hash behind) are fixed; each property
stays as the regression test for its bug.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from base64 import urlsafe_b64encode
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.allocator.protocol import Decision
from app.allocator.protocol import decode as decide
from app.errors import Conflict, InvalidInput, NotFound
from app.schemas import Fallback, GroupCreate, GroupUpdate, PoolCreate, PoolUpdate
from app.store import keys
from app.store.schema import POOL
from app.urls import MAX_URL_LENGTH, UrlPolicy, check_target_url
from tests.helpers import STRATEGIES, Core, allocation_snapshot, open_core, snapshot

T = TypeVar("T")

# =================================================================================================
# 1. Target URL validation
# =================================================================================================

HTTP = UrlPolicy(allow_http=True)
POLICIES = st.sampled_from([UrlPolicy(), HTTP])

_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
_TLD = st.sampled_from(["com", "me", "gg", "example", "xn--p1ai", "co.uk"])
ascii_hosts = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(_LABEL, min_size=1,
                                                                          max_size=3), _TLD)
# Lowercase letters that IDNA 2003 (Python's "idna" codec) keeps as they are (no ß, no final
# sigma), so every non-ASCII label must come out as one xn-- label.
_IDN_ALPHABET = "äöüéèçñøåæœαβγδεжзийклмн中文日本語한국어" + "abcxyz0123"
_idn_label = st.text(_IDN_ALPHABET, min_size=1, max_size=6).filter(lambda s: not s.isascii())
idn_hosts = st.builds(lambda ls, tld: ".".join([*ls, tld]),
                      st.lists(st.one_of(_idn_label, _LABEL), min_size=1, max_size=3)
                      .filter(lambda ls: any(not label.isascii() for label in ls)), _TLD)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
# Path, query and fragment characters: printable ASCII but space, backslash, '#', '?' and '%'
# (a '%' would make unquote() below ambiguous), and maybe some non-ASCII. At most 60 characters
# each, so that an encoded URL stays under the limit (test_encoding_never_grows_a_url_past_the_
# limit is about the limit).
_SAFE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "\\#?%")
_UNICODE = st.characters(min_codepoint=0xA1, max_codepoint=0x2FFF,
                         exclude_categories=["Cs", "Z", "C"])


def _parts(unicode: bool) -> tuple[st.SearchStrategy[str], ...]:
    alphabet = st.one_of(st.sampled_from(_SAFE_ASCII), _UNICODE) if unicode else st.sampled_from(
        _SAFE_ASCII)
    text = st.text(alphabet, max_size=60)
    return (text.map(lambda s: "/" + s), st.one_of(st.just(""), text.map(lambda s: "?" + s)),
            st.one_of(st.just(""), text.map(lambda s: "#" + s)))


paths, queries, fragments = _parts(unicode=True)
ascii_parts = _parts(unicode=False)


@st.composite
def good_urls(draw: st.DrawFn, hosts: st.SearchStrategy[str] = ascii_hosts,
              scheme: str = "https", unicode: bool = True) -> str:
    path, query, frag = (paths, queries, fragments) if unicode else ascii_parts
    scheme = "".join(c.upper() if draw(st.booleans()) else c for c in scheme)
    return f"{scheme}://{draw(hosts)}{draw(ports)}{draw(path)}{draw(query)}{draw(frag)}"


any_urls = st.one_of(good_urls(), good_urls(idn_hosts), good_urls(scheme="http"))


def check(url: str, policy: UrlPolicy | None = None) -> str | None:
    """The validated URL, or None when refused. Anything but InvalidInput fails the test."""
    try:
        return check_target_url(url, policy)
    except InvalidInput:
        return None


def assert_safe(result: str, policy: UrlPolicy) -> None:
    """What any accepted URL must be: fit for a Location header, and pointing where it says."""
    assert result.isascii(), result
    assert len(result) <= MAX_URL_LENGTH, len(result)
    assert not any(ord(c) < 0x21 or ord(c) == 0x7F for c in result), result
    assert "\\" not in result, result
    parts = urlsplit(result)
    assert parts.scheme.lower() in ({"https", "http"} if policy.allow_http else {"https"}), result
    assert parts.hostname, result
    assert parts.username is None and parts.password is None and "@" not in parts.netloc, result
    assert check_target_url(result, policy) == result  # idempotent


# Broad text: most of it is refused, which is the point (only InvalidInput, never a crash).
_noise = st.text(st.characters(), max_size=80)
_url_alphabet = st.text(st.sampled_from("hts:/\\@%.#?[]:-_ abcé中\t\r\n\x00\x7f"), max_size=40)


@settings(max_examples=400)
@given(url=st.one_of(_noise, _url_alphabet.map(lambda s: "https://" + s), any_urls),
       policy=POLICIES)
def test_accepted_urls_are_safe_and_validation_is_idempotent(url: str, policy: UrlPolicy) -> None:
    result = check(url, policy)
    if result is not None:
        assert_safe(result, policy)


@given(url=good_urls(unicode=False))
def test_plain_https_urls_are_accepted_unchanged(url: str) -> None:
    assert check(url) == url


@given(url=st.one_of(good_urls(idn_hosts), good_urls()), policy=POLICIES)
def test_unicode_is_encoded_to_ascii_without_changing_the_target(
    url: str, policy: UrlPolicy
) -> None:
    """IDN hosts become xn-- labels (lowercased, as DNS does), the rest is percent-encoded UTF-8
    that decodes back to what was given."""
    result = check(url, policy)
    assert result is not None, url
    assert_safe(result, policy)
    given_, got = urlsplit(url), urlsplit(result)
    assert got.hostname == (given_.hostname or "").encode("idna").decode("ascii")
    for label in (given_.hostname or "").split("."):
        if not label.isascii():
            assert label.encode("idna").startswith(b"xn--")
    assert got.port == given_.port
    assert unquote(got.path) == given_.path
    assert unquote(got.query) == given_.query
    assert unquote(got.fragment) == given_.fragment


@pytest.mark.parametrize(("url", "expected"), [
    ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
    ("https://例え.jp/", "https://xn--r8jz45g.jp/"),
    ("HTTPS://ÉXAMPLE.com", "https://xn--xample-9ua.com"),
    ("https://[::1]/é", "https://[::1]/%C3%A9"),
    ("https://exa\u00admple.com/", None),  # a SOFT HYPHEN (format character): refused
    ("https://evil.example%40good.example/", None),
    ("https://t.me/+abc\u00a0", None),  # a NO-BREAK SPACE pasted with the link
    ("https://example.com/" + "é" * 1000, None),  # 1,020 characters, 6,020 encoded
])
def test_examples(url: str, expected: str | None) -> None:
    assert check(url) == expected


def _case_mix(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda ups: "".join(c.upper() if up else c for c, up in zip(word, ups, strict=True)))


_leading_junk = st.text(st.characters(max_codepoint=0x20), max_size=3)


@given(
    scheme=st.sampled_from(["javascript", "data", "vbscript", "file"]).flatmap(_case_mix),
    junk=_leading_junk,
    payload=st.sampled_from(["alert(1)", "//evil.example/%0aalert(1)", "text/html,<script>",
                             "///etc/passwd", "//evil.example/x", "https://t.me/x"]),
    policy=POLICIES,
)
def test_dangerous_schemes_are_refused(
    scheme: str, junk: str, payload: str, policy: UrlPolicy
) -> None:
    assert check(f"{junk}{scheme}:{payload}", policy) is None


@given(host=ascii_hosts, rest=paths, policy=POLICIES,
       prefix=st.sampled_from(["//", "///", "/\\", "\\\\", ":/", "://", "", "/", "https:",
                               "https:/", "https:///", "https:\\\\"]))
def test_scheme_relative_and_schemeless_urls_are_refused(
    host: str, rest: str, policy: UrlPolicy, prefix: str
) -> None:
    assert check(f"{prefix}{host}{rest}", policy) is None


@given(url=any_urls, where=st.integers(0, 10_000),
       bad=st.sampled_from(["\r\n", "\r", "\n", "\x00", "\t", " ", "\x0b", "\x0c", "\x7f",
                            "\r\nSet-Cookie: a=b", "\\"]))
def test_crlf_controls_spaces_and_backslashes_anywhere_are_refused(
    url: str, where: int, bad: str
) -> None:
    i = where % (len(url) + 1)
    assert check(url[:i] + bad + url[i:], HTTP) is None


@given(url=good_urls(), where=st.integers(0, 10_000),
       chars=st.sampled_from(["\u010d\u010a", "\u560d\u560a", "\u0d0a", "\uff0d\uff0a"]))
def test_unicode_whose_low_bytes_are_crlf_never_reaches_the_header(
    url: str, where: int, chars: str
) -> None:
    """The classic header-splitting trick (a character that is CR or LF once truncated to a
    byte): accepted only percent-encoded, or refused."""
    i = len("https://") + where % (len(url) - len("https://") + 1)
    result = check(url[:i] + chars + url[i:])
    if result is not None:
        assert result.isascii() and "\r" not in result and "\n" not in result


_userinfo = st.one_of(
    _LABEL, st.builds(lambda u, p: f"{u}:{p}", _LABEL, _LABEL), st.just(""), st.just(":"),
    _LABEL.map(lambda u: u + "%40good.example"), st.just("good.example"),
)


@given(userinfo=_userinfo, host=st.one_of(ascii_hosts, idn_hosts), rest=paths, policy=POLICIES)
def test_userinfo_is_refused(userinfo: str, host: str, rest: str, policy: UrlPolicy) -> None:
    """https://a@b, https://a:b@c, https://@b, https://a%40good.example@evil ..."""
    assert check(f"https://{userinfo}@{host}{rest}", policy) is None


@given(host=ascii_hosts, evil=ascii_hosts,
       shape=st.sampled_from(["/{e}@{e}", "/@{e}", "?next=@{e}", "#@{e}", "/%40{e}", "/a%40{e}"]))
def test_an_at_sign_after_the_authority_is_not_userinfo(host: str, evil: str, shape: str) -> None:
    """'@' in the path, query or fragment (raw or %40) does not move the host."""
    result = check(f"https://{host}" + shape.format(e=evil))
    assert result is not None
    assert urlsplit(result).hostname == host


@given(host=ascii_hosts, at=st.sampled_from(["\uff20", "\ufe6b", "\u24d0"]), evil=ascii_hosts)
def test_lookalike_at_signs_in_the_host_are_refused(host: str, at: str, evil: str) -> None:
    """FULLWIDTH/SMALL COMMERCIAL AT normalise (NFKC) to '@': refused, not turned into
    userinfo by a later normalisation."""
    result = check(f"https://{host}{at}{evil}/")
    if at != "\u24d0":  # CIRCLED LATIN SMALL LETTER A is just a letter
        assert result is None
    else:
        assert result is None or "@" not in urlsplit(result).netloc


@given(host=ascii_hosts, enc=st.sampled_from(["%40", "%2F", "%2f", "%2E", "%00", "%25", "%41"]),
       other=ascii_hosts)
def test_percent_encoding_in_the_host_is_refused(host: str, enc: str, other: str) -> None:
    """Found: 'https://evil.example%40good.example/' was accepted (WHATWG decodes the host to
    'evil.example@good.example'), also past an allow-list ('https://evil.example%2F.t.me/')."""
    assert check(f"https://{host}{enc}{other}/") is None


@given(host=ascii_hosts, extra=st.integers(1, 3000), policy=POLICIES)
def test_urls_longer_than_the_limit_are_refused(host: str, extra: int, policy: UrlPolicy) -> None:
    base = f"https://{host}/"
    at_limit = base + "a" * (MAX_URL_LENGTH - len(base))
    assert check(at_limit, policy) == at_limit
    assert check(at_limit + "a" * extra, policy) is None


@given(n=st.integers(400, 2000), ch=st.sampled_from(["é", "中", "😀"]))
def test_encoding_never_grows_a_url_past_the_limit(n: int, ch: str) -> None:
    """Found: the limit was checked before encoding: 'https://example.com/' + 'é' * 1000 was
    stored as 6,020 characters."""
    url = "https://example.com/" + ch * n
    assume(len(url) <= MAX_URL_LENGTH)
    result = check(url)
    assert result is None or len(result) <= MAX_URL_LENGTH


@given(addr=st.sampled_from(["[::1]", "[2001:db8::1]", "[2001:db8::1]:8443", "127.0.0.1",
                             "[::ffff:127.0.0.1]"]), rest=paths.filter(str.isascii))
def test_ip_literals_are_accepted_unchanged(addr: str, rest: str) -> None:
    assert check(f"https://{addr}{rest}") == f"https://{addr}{rest}"


@given(addr=st.sampled_from(["[::1]", "[2001:db8::1]", "[2001:db8::1]:8443"]),
       rest=paths.filter(lambda p: not p.isascii()))
def test_ip_literals_keep_their_brackets_when_the_rest_is_encoded(addr: str, rest: str) -> None:
    """Found: 'https://[::1]/é' became 'https://::1/%C3%A9' (no longer an IPv6 URL)."""
    result = check(f"https://{addr}{rest}")
    assert result is not None
    assert urlsplit(result).netloc == addr
    assert check(result) == result


@given(url=good_urls(), sur=st.characters(categories=["Cs"]))
def test_lone_surrogates_are_invalid_input(url: str, sur: str) -> None:
    """Found: 'https://a.example/\ud800' raised UnicodeEncodeError, not InvalidInput (the CLI's
    arguments can carry surrogates: surrogateescape of non-UTF-8 bytes)."""
    assert check(url + sur) is None  # and check() lets anything but InvalidInput through


@given(url=good_urls(), ch=st.characters(categories=["Zs", "Zl", "Zp", "Cc"], min_codepoint=0x80))
def test_unicode_spaces_and_controls_are_refused(url: str, ch: str) -> None:
    """Found: only ASCII spaces and controls were refused; a NO-BREAK SPACE pasted with a link,
    NEL, U+2028 or U+3000 were stored percent-encoded (a silently broken invite link)."""
    assert check(url + ch) is None


@given(url=good_urls(scheme="http"))
def test_http_needs_the_policy(url: str) -> None:
    assert check(url) is None
    result = check(url, HTTP)
    assert result is not None
    assert_safe(result, HTTP)


_ALLOWED = frozenset({"t.me", "chat.whatsapp.com"})


@given(url=st.one_of(good_urls(), good_urls(idn_hosts),
                     st.builds(lambda sub, h, p: f"https://{sub}{h}{p}",
                               st.sampled_from(["", "www.", "a.b."]),
                               st.sampled_from(sorted(_ALLOWED)), paths)))
def test_an_accepted_url_is_on_the_allow_list(url: str) -> None:
    policy = UrlPolicy(allowed_hosts=_ALLOWED)
    result = check(url, policy)
    if result is not None:
        host = urlsplit(result).hostname or ""
        assert any(host == h or host.endswith("." + h) for h in _ALLOWED), result


@given(evil=st.sampled_from(["evilt.me", "t.me.evil.example", "xt.me", "t.me-x.example",
                             "chat.whatsapp.com.evil.example", "t.me%2F.evil.example"]),
       rest=paths)
def test_lookalike_hosts_are_not_on_the_allow_list(evil: str, rest: str) -> None:
    assert check(f"https://{evil}{rest}", UrlPolicy(allowed_hosts=_ALLOWED)) is None


def test_the_allow_list_matches_a_host_in_either_form() -> None:
    """Found (fails closed): the allow-list was compared with the host before IDNA."""
    assert check("https://bücher.example/", UrlPolicy(
        allowed_hosts=frozenset({"xn--bcher-kva.example"}))) is not None
    assert check("https://xn--bcher-kva.example/", UrlPolicy(
        allowed_hosts=frozenset({"bücher.example"}))) is not None


# =================================================================================================
# 2. The store layer: targeted properties
# =================================================================================================


def _run_core(url: str, body: Callable[[Core], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_core(url) as core:
            await core.redis.flushall()
            return await body(core)

    return asyncio.run(main())


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pool_id=st.from_regex(r"[a-z0-9][a-z0-9-]{1,10}[a-z0-9]", fullmatch=True))
def test_adding_groups_to_a_missing_pool_writes_nothing(redis_url: str, pool_id: str) -> None:
    """A refused add writes nothing, not even an empty pool hash that would then make the id
    impossible to create (409 'already exists' for good)."""

    async def body(core: Core) -> None:
        before = await snapshot(core.redis)
        with pytest.raises(NotFound):
            await core.store.add_groups(pool_id, [GroupCreate(url="https://t.me/+a")])
        assert await snapshot(core.redis) == before
        await core.store.create_pool(PoolCreate(id=pool_id))

    _run_core(redis_url, body)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=good_urls(idn_hosts))
def test_fallback_urls_are_stored_as_validated(redis_url: str, url: str) -> None:
    """Found: fallback.url was validated but stored as given, not in its ASCII form: the scan's
    Location header then failed (a 503 page) or carried non-ASCII bytes."""

    async def body(core: Core) -> str:
        await core.store.create_pool(PoolCreate(id="fb-pool", fallback=Fallback(url=url)))
        decision = await core.allocator.scan("fb-pool", "A" * 22)
        assert decision.outcome == "fallback"
        return decision.fallback_url

    assert _run_core(redis_url, body) == check_target_url(url, field="fallback.url")


# =================================================================================================
# 3. The pool/group lifecycle: a state machine against a model, on the real Redis
# =================================================================================================

EXPIRIES = ("none", "past", "future")


def _expiry(kind: str) -> datetime | None:
    now = datetime.now(UTC)
    return {"none": None, "past": now - timedelta(hours=1), "future": now + timedelta(days=1)}[kind]


def draw_point(salt: str, vid: str, total: int) -> int:
    """scan.lua's weighted draw: the first 32 bits of SHA-1(pool salt + visitor id), scaled to
    the total weight."""
    x = int(hashlib.sha1((salt + vid).encode()).hexdigest()[:8], 16)
    return min(math.floor(x / 2**32 * total), total - 1)


@dataclass
class MGroup:
    gid: str
    cap: int
    enabled: bool
    expiry: str  # none | past | future ("future" is a day away: never reached in a test)
    weight: int
    pos: int
    fi: int  # Fenwick slot
    count: int = 0

    def eligible(self) -> bool:
        return self.enabled and self.count < self.cap and self.expiry != "past"


@dataclass
class MPool:
    pid: str
    strategy: str
    salt: str = ""  # the weighted draw's
    paused: bool = False
    groups: dict[str, MGroup] = field(default_factory=dict)
    seq: int = 0  # highest position handed out
    fwn: int = 0  # Fenwick slots
    gseq: int = 0  # auto ids g1, g2, ...
    rr: int | None = None  # round_robin cursor: the position of the last pick
    sticky: dict[str, int] = field(default_factory=dict)  # visitor -> Fenwick slot of the group
    gone: set[str] = field(default_factory=set)  # deleted group ids, free to be used again
    new: int = 0
    fallback: int = 0
    reset_away: int = 0  # counts that resets took away
    deleted_away: int = 0  # counts that went with deleted groups

    def ordered(self) -> list[MGroup]:
        return sorted(self.groups.values(), key=lambda g: g.pos)

    def pick(self, vid: str) -> str | None:
        """The group scan.lua must give a new visitor."""
        ok = [g for g in self.ordered() if g.eligible()]
        if not ok:
            return None
        if self.strategy == "fill" or (self.strategy == "round_robin" and self.rr is None):
            return ok[0].gid
        if self.strategy == "round_robin":
            assert self.rr is not None
            return next((g.gid for g in ok if g.pos > self.rr), ok[0].gid)
        if self.strategy == "least_filled":
            return min(ok, key=lambda g: (g.count / g.cap, g.gid)).gid
        total = sum(g.weight for g in ok)
        r = draw_point(self.salt, vid, total)
        acc = 0
        for g in sorted(ok, key=lambda g: g.fi):
            acc += g.weight
            if acc > r:
                return g.gid
        raise AssertionError("unreachable")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def _zscores(r: Any, key: str) -> dict[str, float]:
    return {_s(m): float(sc) for m, sc in await r.zrange(key, 0, -1, withscores=True)}


# (capacity, enabled, expiry, weight, explicit id?): mostly groups that can take scans
GROUP_SPECS = st.lists(st.tuples(
    st.integers(1, 5), st.sampled_from([True, True, True, False]),
    st.sampled_from(["none", "none", "future", "past"]), st.integers(1, 5), st.booleans(),
), min_size=1, max_size=3)


class PoolLifecycle(RuleBasedStateMachine):
    """Pools and groups changed through PoolStore and scanned through the real scan script
    (Allocator), each step checked against MPool. After every step, straight from Redis: every
    group's fields; `av` holds exactly the enabled, not full, not expired groups, scored by
    position; `lf` has the same members (and count/capacity scores while least_filled); `ex` the
    indexed groups that expire; every Fenwick node and `fwt` match the indexed weights; stats,
    sticky records, and the total of counts (new allocations minus resets and deletions); the dry
    run agrees with the model. At each scan: a paused pool or a sticky re-scan writes nothing, a
    new scan goes where the strategy says (fill: the first group in order with room), and never
    into a group that was full."""

    redis_url = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self._core_cm: AbstractAsyncContextManager[Core] = open_core(self.redis_url)
        self.core: Core = self.run(self._core_cm.__aenter__())
        self.run(self.core.redis.flushall())
        self.pools: dict[str, MPool] = {}
        self.visitors: list[tuple[str, str]] = []  # (pool, visitor) that scanned
        self.n = 0

    def run(self, aw: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await aw

        return self.runner.run(wrap())

    def teardown(self) -> None:
        try:
            self.run(self._core_cm.__aexit__(None, None, None))
        finally:
            self.runner.close()

    def _next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _pool(self, data: st.DataObject, *, with_groups: bool = False) -> MPool:
        """Mostly the first pool: a second one is there to show that pools do not mix, and
        every step spent on it is one less on the first pool's history."""
        pids = sorted(pid for pid, p in self.pools.items() if p.groups or not with_groups)
        first = [pid for pid in pids if pid == "pool-1"] * 3
        return self.pools[data.draw(st.sampled_from(first + pids), label="pool")]

    def _group(self, data: st.DataObject, pool: MPool) -> str:
        """Mostly an existing group; sometimes one that is not (deleted, or never was)."""
        existing: bool = data.draw(st.integers(0, 7), label="existing?") > 0
        if pool.groups and existing:
            return data.draw(st.sampled_from(sorted(pool.groups)), label="gid")
        return data.draw(st.sampled_from(["nope", *sorted(pool.gone)]), label="missing gid")

    def _unchanged(self, action: Callable[[], Awaitable[Any]], *,
                   but_page_views: bool = False) -> Any:
        """The action writes nothing (`but_page_views`: nothing but what scans record)."""
        take = allocation_snapshot if but_page_views else snapshot
        before = self.run(take(self.core.redis))
        result = self.run(action())
        after = self.run(take(self.core.redis))
        assert after == before, {k: (before.get(k), after.get(k))
                                 for k in set(before) | set(after) if before.get(k) != after.get(k)}
        return result

    def _refused(self, exc: type[Exception], action: Callable[[], Awaitable[Any]]) -> None:
        async def expect() -> None:
            with pytest.raises(exc):
                await action()

        self._unchanged(expect)

    # --- pools ---

    @initialize(data=st.data(), strategy=st.sampled_from(STRATEGIES), specs=GROUP_SPECS)
    def first_pool(self, data: st.DataObject, strategy: str,
                   specs: list[tuple[int, bool, str, int, bool]]) -> None:
        """Every run starts with pool-1 and a few groups, so that its steps go to the history
        of a live pool rather than to building one."""
        self.create_pool(strategy)
        self.add_groups(data, specs)

    @precondition(lambda self: len(self.pools) < 2)
    @rule(strategy=st.sampled_from(STRATEGIES))
    def create_pool(self, strategy: str) -> None:
        pid = self._next("pool-")
        self.run(self.core.store.create_pool(PoolCreate(id=pid, strategy=strategy)))  # type: ignore[arg-type]
        salt = self.run(self.core.redis.hget(keys.pool(pid), POOL.stored("draw_salt")))
        self.pools[pid] = MPool(pid, strategy, salt.decode())

    @rule(data=st.data(), strategy=st.sampled_from(STRATEGIES))
    def set_strategy(self, data: st.DataObject, strategy: str) -> None:
        pool = self._pool(data)
        self.run(self.core.store.update_pool(pool.pid, PoolUpdate(strategy=strategy)))  # type: ignore[arg-type]
        pool.strategy = strategy

    @rule(data=st.data(), paused=st.booleans())
    def pause_or_resume(self, data: st.DataObject, paused: bool) -> None:
        pool = self._pool(data)
        self.run(self.core.store.set_status(pool.pid, "paused" if paused else "active"))
        pool.paused = paused

    # --- groups ---

    @rule(data=st.data(), specs=GROUP_SPECS)
    def add_groups(
        self, data: st.DataObject, specs: list[tuple[int, bool, str, int, bool]]
    ) -> None:
        pool = self._pool(data)
        creates: list[GroupCreate] = []
        gids: list[str] = []
        auto = pool.gseq
        for cap, enabled, expiry, weight, explicit in specs:
            gid: str | None = None
            if explicit:
                # a new id, or the id of a deleted group: the new group gets a new slot, so the
                # old group's visitors are not sticky to it
                reuse = sorted(pool.gone - set(gids))
                gid = self._next("x")
                again: bool = data.draw(st.booleans(), label="reuse a deleted id?")
                if reuse and again:
                    gid = data.draw(st.sampled_from(reuse), label="reused id")
                gids.append(gid)
            else:
                # group_put.lua: the next g<N> after the pool's gseq that no group holds
                auto += 1
                while f"g{auto}" in pool.groups or f"g{auto}" in gids:
                    auto += 1
                gids.append(f"g{auto}")
            creates.append(GroupCreate(id=gid, url=f"https://chat.example.com/{gids[-1]}",
                                       capacity=cap, enabled=enabled, weight=weight,
                                       expires_at=_expiry(expiry)))
        made = self.run(self.core.store.add_groups(pool.pid, creates))
        assert [g.id for g in made] == gids
        pool.gseq = auto
        for gid, (cap, enabled, expiry, weight, _) in zip(gids, specs, strict=True):
            pool.gone.discard(gid)
            pool.seq += 1
            pool.fwn += 1
            pool.groups[gid] = MGroup(gid, cap, enabled, expiry, weight, pool.seq, pool.fwn)

    def _update(self, data: st.DataObject, cap: int | None = None, enabled: bool | None = None,
                weight: int | None = None, expiry: str | None = None) -> None:
        pool = self._pool(data)
        gid = self._group(data, pool)
        given: dict[str, Any] = {}
        if cap is not None:
            given["capacity"] = cap
        if enabled is not None:
            given["enabled"] = enabled
        if weight is not None:
            given["weight"] = weight
        if expiry is not None:
            given["expires_at"] = _expiry(expiry)
        update = GroupUpdate(**given)
        if gid not in pool.groups:
            self._refused(NotFound, lambda: self.core.store.update_group(pool.pid, gid, update))
            return
        public = self.run(self.core.store.update_group(pool.pid, gid, update))
        g = pool.groups[gid]
        g.cap = cap if cap is not None else g.cap
        g.enabled = enabled if enabled is not None else g.enabled
        g.weight = weight if weight is not None else g.weight
        g.expiry = expiry if expiry is not None else g.expiry
        assert (public.capacity, public.enabled, public.weight, public.count) == (
            g.cap, g.enabled, g.weight, g.count)
        assert public.expired == (g.expiry == "past")

    # One rule per field (so that each is tried often), and one for several at once.

    @rule(data=st.data(), cap=st.integers(1, 5))
    def set_capacity(self, data: st.DataObject, cap: int) -> None:
        self._update(data, cap=cap)

    @rule(data=st.data(), enabled=st.booleans())
    def set_enabled(self, data: st.DataObject, enabled: bool) -> None:
        self._update(data, enabled=enabled)

    @rule(data=st.data(), weight=st.integers(1, 5))
    def set_weight(self, data: st.DataObject, weight: int) -> None:
        self._update(data, weight=weight)

    @rule(data=st.data(), expiry=st.sampled_from(EXPIRIES))
    def set_expiry(self, data: st.DataObject, expiry: str) -> None:
        self._update(data, expiry=expiry)

    @rule(data=st.data(), cap=st.one_of(st.none(), st.integers(1, 5)),
          enabled=st.one_of(st.none(), st.booleans()),
          weight=st.one_of(st.none(), st.integers(1, 5)),
          expiry=st.one_of(st.none(), st.sampled_from(EXPIRIES)))
    def update_group(self, data: st.DataObject, cap: int | None, enabled: bool | None,
                     weight: int | None, expiry: str | None) -> None:
        self._update(data, cap, enabled, weight, expiry)

    @rule(data=st.data())
    def reset_group(self, data: st.DataObject) -> None:
        pool = self._pool(data)
        gid = self._group(data, pool)
        if gid not in pool.groups:
            self._refused(NotFound, lambda: self.core.store.reset_group(pool.pid, gid))
            return
        self.run(self.core.store.reset_group(pool.pid, gid))
        pool.reset_away += pool.groups[gid].count
        pool.groups[gid].count = 0

    @rule(data=st.data())
    def delete_group(self, data: st.DataObject) -> None:
        pool = self._pool(data)
        gid = self._group(data, pool)
        if gid not in pool.groups:
            self._refused(NotFound, lambda: self.core.store.delete_group(pool.pid, gid))
            return
        self.run(self.core.store.delete_group(pool.pid, gid))
        pool.deleted_away += pool.groups.pop(gid).count
        pool.gone.add(gid)

    @precondition(lambda self: any(p.groups for p in self.pools.values()))
    @rule(data=st.data())
    def reorder(self, data: st.DataObject) -> None:
        pool = self._pool(data, with_groups=True)
        order = data.draw(st.permutations(sorted(pool.groups)), label="order")
        listed = self.run(self.core.store.reorder_groups(pool.pid, order))
        assert [g.id for g in listed] == order
        for pos, gid in enumerate(order, start=1):
            pool.groups[gid].pos = pos
        pool.seq = len(order)
        pool.rr = None

    @precondition(lambda self: any(p.groups for p in self.pools.values()))
    @rule(data=st.data(), how=st.sampled_from(["add_existing", "missing", "twice", "stranger"]))
    def refused_change(self, data: st.DataObject, how: str) -> None:
        """A group added twice (409), or a reorder that does not name every group once (422):
        refused, and nothing written."""
        pool = self._pool(data, with_groups=True)
        order = sorted(pool.groups)
        if how == "add_existing":
            gid = data.draw(st.sampled_from(order), label="existing gid")
            self._refused(Conflict, lambda: self.core.store.add_groups(
                pool.pid, [GroupCreate(url="https://t.me/+new"),
                           GroupCreate(id=gid, url="https://t.me/+dup")]))
            return
        bad = {"missing": order[1:], "twice": [*order, order[0]],
               "stranger": [*order, "stranger"]}[how]
        self._refused(InvalidInput, lambda: self.core.store.reorder_groups(pool.pid, bad))

    # --- scans ---

    def _scan(self, pool: MPool, vid: str) -> None:
        slot = pool.sticky.get(vid)
        sticky = next((g for g in pool.groups.values() if g.fi == slot), None)
        if pool.paused:
            decision = self._unchanged(lambda: self.core.allocator.scan(pool.pid, vid),
                                       but_page_views=True)
            assert decision.outcome == "paused"
            return
        if sticky is not None and sticky.enabled and sticky.expiry != "past":
            decision = self._unchanged(lambda: self.core.allocator.scan(pool.pid, vid),
                                       but_page_views=True)
            assert (decision.outcome, decision.group_id) == ("sticky", sticky.gid)
            return
        self._new(pool, vid, self.run(self.core.allocator.scan(pool.pid, vid)))

    def _new(self, pool: MPool, vid: str, decision: Decision) -> None:
        """A scan that found no usable sticky group: where the model says, then in the model."""
        expected = pool.pick(vid)
        if expected is None:
            assert decision.outcome == "fallback", decision
            pool.fallback += 1
            return
        assert (decision.outcome, decision.group_id) == ("new", expected), (decision, pool)
        g = pool.groups[expected]
        assert g.count < g.cap, "allocated into a full group"  # the model's pick had room
        assert decision.url == f"https://chat.example.com/{g.gid}"
        g.count += 1
        pool.new += 1
        pool.sticky[vid] = g.fi
        if pool.strategy == "round_robin":
            pool.rr = g.pos

    @rule(data=st.data(), raws=st.lists(st.binary(min_size=16, max_size=16), min_size=1,
                                         max_size=4))
    def scan_new_visitors(self, data: st.DataObject, raws: list[bytes]) -> None:
        """One to four new visitors in a row (so that groups fill within a few steps)."""
        pool = self._pool(data)
        for raw in raws:
            vid = urlsafe_b64encode(raw)[:22].decode()
            self._scan(pool, vid)
            self.visitors.append((pool.pid, vid))

    @rule(data=st.data(), raws=st.lists(st.binary(min_size=16, max_size=16), min_size=2,
                                         max_size=8, unique=True))
    def scan_new_visitors_together(self, data: st.DataObject, raws: list[bytes]) -> None:
        """Two to eight new visitors (no cookie) at once: the allocator gathers them into one
        call of scan.lua's batch form, which must give each what the same scans one by one
        would, in order."""
        pool = self._pool(data)
        vids = [urlsafe_b64encode(raw)[:22].decode() for raw in raws]
        writes = self.core.fast.write_count

        async def together() -> list[Decision]:
            replies = await asyncio.gather(*(
                self.core.allocator.submit(pool.pid, vid, fresh=True) for vid in vids))
            return [decide(r) for r in replies]

        if pool.paused:
            outcomes = self._unchanged(together, but_page_views=True)
            assert {d.outcome for d in outcomes} == {"paused"}
        else:
            for vid, decision in zip(vids, self.run(together()), strict=True):
                self._new(pool, vid, decision)
                self.visitors.append((pool.pid, vid))
        assert self.core.fast.write_count == writes + 1  # one write, so one call for the pool

    @precondition(lambda self: bool(self.visitors))
    @rule(data=st.data())
    def rescan(self, data: st.DataObject) -> None:
        pid, vid = data.draw(st.sampled_from(self.visitors), label="visitor")
        self._scan(self.pools[pid], vid)

    # --- invariants, read straight from Redis ---

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        for pool in self.pools.values():
            self.run(self._check_pool(pool))

    async def _check_pool(self, pool: MPool) -> None:
        r, p = self.core.redis, keys.prefix(pool.pid)
        ph = {_s(k): _s(v) for k, v in (await r.hgetall(keys.pool(pool.pid))).items()}
        assert ph["status"] == ("paused" if pool.paused else "active")
        assert ph["strategy"] == pool.strategy
        # every group and only them (their positions are checked with each group below)
        every = {_s(g) for g in await r.hvals(keys.slots(pool.pid))}
        assert every == {g.gid for g in pool.groups.values()}
        av = await _zscores(r, p + "av")
        lf = await _zscores(r, p + "lf")
        ex_scores = await _zscores(r, p + "ex")
        ex = set(ex_scores)
        # a scan reads `ex` only once `exn`, its earliest score, has passed
        assert (float(ph["exn"]) if "exn" in ph else None) == (
            min(ex_scores.values()) if ex_scores else None), (ph.get("exn"), ex_scores)
        eligible = {g.gid: g for g in pool.groups.values() if g.eligible()}
        # in `av` iff enabled, count < capacity and not expired; scored by position
        assert av == {gid: g.pos for gid, g in eligible.items()}, (av, pool)
        assert set(lf) == set(av)
        if pool.strategy == "least_filled":
            assert lf == {gid: g.count / g.cap for gid, g in eligible.items()}
        assert ex == {gid for gid, g in eligible.items() if g.expiry == "future"}
        slot_w: dict[int, int] = {}
        fwg = {int(k): _s(v) for k, v in (await r.hgetall(p + "fwg")).items()}
        for g in pool.groups.values():
            raw = {_s(k): _s(v) for k, v in (await r.hgetall(keys.group(pool.pid, g.gid))).items()}
            got = (int(raw["c"]), int(raw["cap"]), raw["en"], int(raw["w"]), int(raw["pos"]),
                   int(raw["fi"]))
            assert got == (g.count, g.cap, "1" if g.enabled else "0", g.weight, g.pos, g.fi), (
                g, raw)
            assert ("exp" in raw) == (g.expiry != "none")
            assert fwg[g.fi] == g.gid
            slot_w[g.fi] = g.weight if g.gid in eligible else 0
        assert set(fwg) == set(slot_w)  # a deleted group's slot names no group any more
        # the Fenwick total is the weight of the indexed groups, and so is every node
        assert int(ph.get("fwt", 0)) == sum(g.weight for g in eligible.values())
        # the pool's room is that of the indexed groups, its capacity that of the usable ones
        # (enabled, not expired: open, or full and in `fl`)
        usable = {g.gid: g for g in pool.groups.values()
                  if g.enabled and g.expiry != "past"}
        assert int(ph["room"]) == sum(g.cap - g.count for g in eligible.values()), (ph, pool)
        assert int(ph["cap"]) == sum(g.cap for g in usable.values()), (ph, pool)
        fl = {_s(m) for m in await r.zrange(p + "fl", 0, -1)}
        assert fl == set(usable) - set(eligible), (fl, pool)
        assert int(ph.get("fwn", 0)) == pool.fwn
        fw = {int(k): int(v) for k, v in (await r.hgetall(p + "fw")).items()}
        for i in range(1, pool.fwn + 1):
            low = i - (i & -i)
            assert fw.get(i, 0) == sum(slot_w.get(j, 0) for j in range(low + 1, i + 1)), (i, fw)
        # counts: successful new allocations minus what resets and deletions took away
        stats = {_s(k): int(v) for k, v in (await r.hgetall(keys.stats(pool.pid))).items()}
        assert stats.get("new", 0) == pool.new
        assert stats.get("fallback", 0) == pool.fallback
        assert sum(g.count for g in pool.groups.values()) == (
            pool.new - pool.reset_away - pool.deleted_away)
        for vid, slot in pool.sticky.items():
            assert _s(await r.get(keys.sticky(pool.pid, vid))) == str(slot)
        # the dry run (next_group) agrees with the model; weighted draws with a random visitor
        peek = await self.core.store.next_group(pool.pid)
        if pool.paused:
            assert peek is None
        elif pool.strategy == "weighted":
            assert (peek is None) == (not eligible) and (peek is None or peek in eligible)
        else:
            assert peek == pool.pick("")


def test_pool_lifecycle_state_machine(redis_url: str) -> None:
    class Machine(PoolLifecycle):
        pass

    Machine.redis_url = redis_url
    run_state_machine_as_test(Machine, settings=settings(
        max_examples=100, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ))
