"""Every Redis key livecode uses, in one place.

All keys of a pool share the hash tag `{pool_id}`, so each script touches one cluster slot.
The suffixes after the prefix are also spelled in the Lua scripts (`app/allocator/*.lua`).
"""

from __future__ import annotations

import re

# \Z, not $: "$" also matches before a trailing newline, which would reach a key name.
POOL_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,62})[a-z0-9]\Z")
GROUP_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")
VISITOR_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}\Z")
CHANNEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")

POOLS_INDEX = "lc:pools"  # zset of pool ids by creation time, for listing

# Admin API keys belong to no pool; they share the hash tag {apikeys} so the scripts that touch a
# key's hash and the index together stay in one cluster slot.
APIKEY_ID_RE = re.compile(r"[0-9a-f]{8}")  # use with fullmatch
APIKEYS_PREFIX = "lc:{apikeys}:"
APIKEYS_INDEX = APIKEYS_PREFIX + "ids"  # set of every key id


def prefix(pool_id: str) -> str:
    return f"lc:{{{pool_id}}}:"


def pool(pool_id: str) -> str:
    return prefix(pool_id) + "pool"


def group(pool_id: str, group_id: str) -> str:
    return prefix(pool_id) + "g:" + group_id


def slots(pool_id: str) -> str:
    """hash of every group's Fenwick slot -> its id: the index of all the pool's groups (their
    order is the `pos` field of each group's hash)."""
    return prefix(pool_id) + "fwg"


def stats(pool_id: str) -> str:
    return prefix(pool_id) + "st"


def sticky(pool_id: str, visitor_id: str) -> str:
    return prefix(pool_id) + "v:" + visitor_id


def sticky_pattern(pool_id: str) -> str:
    return prefix(pool_id) + "v:*"


def pool_keys(pool_id: str) -> list[str]:
    """The fixed per-pool keys (group hashes and sticky keys come on top)."""
    p = prefix(pool_id)
    return [p + s for s in ("pool", "st", "av", "lf", "ex", "fw", "fwg")]


def apikey(key_id: str) -> str:
    """hash of one API key: hash (sha256 hex of the full key), name, scope, created, last_used."""
    return APIKEYS_PREFIX + "k:" + key_id


# --- The operator console (app/console) ---------------------------------------------------------
# Sessions and sign-in throttling belong to no pool: they share the fixed hash tag {console}.
CONSOLE_PREFIX = "lc:{console}:"


def console_session(token_digest: str) -> str:
    """hash of one console session, by the SHA-256 hex of its token: key_id, scope, csrf,
    created (ms). Its TTL is the idle timeout, capped by the absolute one."""
    return CONSOLE_PREFIX + "s:" + token_digest


def console_signin_failures(client: str) -> str:
    """counter of failed sign-ins from one client address, expiring with its window."""
    return CONSOLE_PREFIX + "f:" + client
