"""Every Redis key livecode uses, by name. What each key of a pool holds, and every field of its
hashes, is in app/store/schema.py.

All keys of a pool share the hash tag `{pool_id}`, so each script touches one cluster slot.
Keys of no pool use fixed hash tags of their own ({apikeys}, ...), for the same reason.
"""

from __future__ import annotations

import re

from app.store.schema import suffix

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
    return prefix(pool_id) + suffix("pool")


def group(pool_id: str, group_id: str) -> str:
    return prefix(pool_id) + suffix("group") + group_id


def slots(pool_id: str) -> str:
    """hash of every group's slot -> its id: the index of all the pool's groups (their order is
    each group's `position`)."""
    return prefix(pool_id) + suffix("slots")


def stats(pool_id: str) -> str:
    return prefix(pool_id) + suffix("stats")


def sticky(pool_id: str, visitor_id: str) -> str:
    return prefix(pool_id) + suffix("sticky") + visitor_id


def sticky_pattern(pool_id: str) -> str:
    return prefix(pool_id) + suffix("sticky") + "*"


def deleting(pool_id: str) -> str:
    return prefix(pool_id) + suffix("deleting")


def pool_keys(pool_id: str) -> list[str]:
    """The fixed per-pool keys (group hashes and sticky keys come on top)."""
    p = prefix(pool_id)
    return [p + suffix(name) for name in
            ("pool", "stats", "open", "open_by_fill", "open_expiring", "full", "weights",
             "slots")]


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


def console_reveal(token_digest: str) -> str:
    """string: a secret a session is to be shown once on the page it is sent to next (a new
    API key, a webhook's generated signing secret), as JSON; read and deleted at once, expires
    within minutes if never read."""
    return CONSOLE_PREFIX + "r:" + token_digest


# Events of no pool, the feed of every event, and the dispatcher's place in each pool's stream
# (app/events/store.py), all in one slot; the scheduler's leader lease (app/events/scheduler.py).
EVENTS_PREFIX = "lc:{events}:"
EVENTS_SYSTEM = EVENTS_PREFIX + "sys"  # stream: events of no pool, and deleted pools' last ones
EVENTS_FEED = EVENTS_PREFIX + "feed"  # stream: every event once, as dispatched
EVENTS_CURSORS = EVENTS_PREFIX + "cursors"  # hash: source (pool id or _sys) -> last stream id
SCHEDULER_LEADER = "lc:{scheduler}:leader"  # string: the instance that runs the scheduler


# --- Webhooks ---------------------------------------------------------------------------------
# Subscriptions, their deliveries and the delivery queue belong to no pool: every key shares the
# hash tag {webhooks}, so each webhook script touches one cluster slot. The scripts
# (app/webhooks/*.lua) build the per-webhook and per-delivery names from WEBHOOKS_PREFIX with the
# same suffixes as below.
WEBHOOK_ID_RE = re.compile(r"wh_[0-9a-f]{12}")  # use with fullmatch
DELIVERY_ID_RE = re.compile(r"dl_[0-9a-f]{24}")  # use with fullmatch
WEBHOOKS_PREFIX = "lc:{webhooks}:"
WEBHOOKS_INDEX = WEBHOOKS_PREFIX + "ids"  # zset webhook id -> created ms
WEBHOOKS_DUE = WEBHOOKS_PREFIX + "due"  # zset pending delivery id -> due (or lease end) ms
WEBHOOKS_DEAD = WEBHOOKS_PREFIX + "dead"  # zset dead-lettered delivery id -> dead ms


def webhook(webhook_id: str) -> str:
    """hash: url, format, events, pools, enabled, name, secret, created, updated, np (pending)."""
    return WEBHOOKS_PREFIX + "w:" + webhook_id


def webhook_history(webhook_id: str) -> str:
    """zset delivery id -> created ms: every delivery of the webhook that is kept."""
    return WEBHOOKS_PREFIX + "h:" + webhook_id


def webhook_delivered(webhook_id: str) -> str:
    """zset delivery id -> delivered ms: the delivered ones, trimmed to the newest N."""
    return WEBHOOKS_PREFIX + "ok:" + webhook_id


def webhook_rate(webhook_id: str, minute: int) -> str:
    """counter with a TTL: claims of a rate-limited webhook in one minute (Unix ms // 60000)."""
    return WEBHOOKS_PREFIX + f"rl:{webhook_id}:{minute}"


def delivery(delivery_id: str) -> str:
    """hash: wid, eid, event (JSON), lang, st, created, age0, next, tok, n, last_*, done."""
    return WEBHOOKS_PREFIX + "d:" + delivery_id


def delivery_attempts(delivery_id: str) -> str:
    """list of attempt JSON, newest first, trimmed to the newest N."""
    return WEBHOOKS_PREFIX + "a:" + delivery_id


def delivery_seen(delivery_id: str) -> str:
    """string with a TTL: the (webhook, event) pair was enqueued (outlives a trimmed delivery)."""
    return WEBHOOKS_PREFIX + "seen:" + delivery_id
