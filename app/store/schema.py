"""The data model: every Redis key of a pool and every field of its hashes, with who writes it.

This is the one description of what livecode stores. The Python side reads and writes fields
through it, and the Lua scripts get it as tables (`POOL.valid_from` is the pool hash's `vf`
field, `KEY.open` the suffix of the open-groups index), compiled into their prelude by
`app/allocator/scripts.py`. Stored names stay short: they are repeated in every group's hash.

Every key of a pool starts with `lc:{<pool_id>}:`: the hash tag puts all of them in one Redis
Cluster slot, so a script that touches one pool never touches another slot. Keys of no pool
(the pool index, API keys, webhooks, console sessions) are in `app/store/keys.py`.

Writers are the scripts in app/allocator/ (`scan`, `group_put`, ...) and, for the fields no
script needs to keep consistent, the service layer (`app/store/pools.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    name: str  # what the code calls it: Python attribute, Lua table key
    stored: str  # the hash field in Redis
    doc: str
    writers: tuple[str, ...]


class Hash:
    """The fields of one kind of hash, by the name the code uses."""

    def __init__(self, key: str, doc: str, fields: tuple[Field, ...]) -> None:
        self.key = key  # the key's suffix after the pool prefix
        self.doc = doc
        self.fields = fields
        self._by_name = {f.name: f for f in fields}
        self._by_stored = {f.stored: f for f in fields}

    def stored(self, name: str) -> str:
        return self._by_name[name].stored

    def decode(self, raw: Mapping[Any, Any]) -> dict[str, str]:
        """An HGETALL reply as {name: value}; unknown stored fields are left out."""
        out: dict[str, str] = {}
        by_stored = self._by_stored
        for k, v in raw.items():
            field = by_stored.get(k.decode() if isinstance(k, bytes) else k)
            if field is not None:
                out[field.name] = v.decode() if isinstance(v, bytes) else str(v)
        return out

    def encode(self, values: Mapping[str, str]) -> list[str]:
        """{name: value} as stored field/value pairs, for HSET or a script's arguments."""
        return [x for name, v in values.items() for x in (self.stored(name), v)]


def _f(name: str, stored: str, doc: str, *writers: str) -> Field:
    return Field(name, stored, doc, writers)


POOL = Hash("pool", "One per pool: its settings and the allocator's running state.", (
    _f("status", "status", "active | paused; absent: no such pool", "pool_put"),
    _f("name", "name", "shown on the pages a scan lands on", "pool_put"),
    _f("strategy", "strategy", "fill | round_robin | weighted | least_filled", "pool_put"),
    _f("mode", "mode", "redirect | page: the default of groups without their own", "pool_put"),
    _f("valid_from", "vf", "epoch ms before which scans get 'not started'; absent: none",
       "pool_put"),
    _f("valid_until", "vu", "epoch ms from which scans get 'ended'; absent: none", "pool_put"),
    _f("sticky_ttl", "ttl", "seconds a visitor keeps their group (sticky record TTL)",
       "pool_put"),
    _f("fallback_url", "fb_url", "where scans go when no group has room", "pool_put"),
    _f("fallback_message", "fb_msg", "or the message shown then", "pool_put"),
    _f("fallback_contact", "fb_contact", "and a contact URL shown as a QR code", "pool_put"),
    _f("created", "created", "epoch ms", "pool_put"),
    _f("draw_salt", "salt", "secret mixed into the weighted draw, so that a client cannot "
       "choose its group by choosing its visitor id", "pool_put"),
    _f("next_expiry", "exn", "the earliest expiry in `open_expiring`, cached so that a scan "
       "reads that index only once some group may have expired; absent: none expires",
       "scan", "group_put", "group_delete"),
    _f("rr_cursor", "rr", "round_robin: the position of the last group picked",
       "scan", "group_reorder"),
    _f("slots", "fwn", "Fenwick tree size: group slots ever handed out (never reused)",
       "group_put"),
    _f("weight_total", "fwt", "sum of the weights of the open groups (weighted draw)",
       "scan", "group_put", "group_delete"),
    _f("last_position", "seq", "the highest group position handed out", "group_put",
       "group_reorder"),
    _f("group_seq", "gseq", "the last N of the automatic group ids g<N>", "group_put"),
    _f("room", "room", "places left in the open groups (sum of capacity - count); absent in "
       "pools older than it until the start-up migration", "scan", "group_put", "group_delete",
       "pool_migrate"),
    _f("capacity", "cap", "total capacity of the usable groups: enabled and not expired, open or "
       "full (the open index and `full`); pool.low's percent is of it", "scan", "group_put",
       "group_delete", "tick", "pool_migrate"),
    # statistics and alerts (recorders/stats.lua, recorders/events.lua, the scheduler)
    _f("timezone", "tz", "IANA name of the operator's zone: their days", "pool_put"),
    _f("tz_offset", "tzo", "that zone's UTC offset now, in seconds (the scheduler follows "
       "daylight saving time)", "pool_put", "tick"),
    _f("language", "lang", "zh-CN | en: of the chat alerts", "pool_put"),
    _f("stats_ttl", "sttl", "seconds statistics are kept after their hour or day ends",
       "pool_put", "pool_migrate"),
    _f("stats_hour", "shr", "the hourly bucket whose expiry the scan set last", "scan"),
    _f("low_minutes", "alm", "pool.low when the pool runs out within this many minutes at "
       "the current rate; absent: DEFAULT.low_minutes", "pool_put"),
    _f("low_percent", "alp", "or when less than this percent of its capacity is left; "
       "absent: DEFAULT.low_percent", "pool_put"),
    _f("low_every", "ale", "minutes between two pool.low events; absent: DEFAULT.low_every",
       "pool_put"),
    _f("expiring_hours", "aex", "group.expiring this many hours before a code expires; "
       "absent: DEFAULT.expiring_hours", "pool_put"),
    _f("low_at", "lowat", "epoch ms of the last pool.low", "scan", "tick"),
    _f("low_checked", "lowck", "the minute (epoch minutes) whose first allocation checked the "
       "rate against low_minutes", "scan"),
    _f("exhausted", "exh", "'1' from pool.exhausted until pool.recovered", "scan", "group_put"),
))

GROUP = Hash("g:", "One per group (key suffix g:<group id>): an invite link and its count.", (
    _f("name", "name", "the operator's label", "group_put"),
    _f("url", "url", "the invite link a scan is sent to (validated, ASCII)", "group_put"),
    _f("capacity", "cap", "scans this group may get", "group_put"),
    _f("count", "c", "scans it got: only the scan script adds to it", "scan", "group_put"),
    _f("expires_at", "exp", "epoch ms when its code stops working; absent: never",
       "group_put"),
    _f("weight", "w", "its share in a weighted pool", "group_put"),
    _f("enabled", "en", "'1' or '0'", "group_put"),
    _f("mode", "mode", "redirect | page; absent: the pool's", "group_put"),
    _f("position", "pos", "its place in the operator's order (fill, round_robin)",
       "group_put", "group_reorder"),
    _f("slot", "fi", "its Fenwick slot, fixed for life; sticky records hold it",
       "group_put"),
    _f("expiring_warned", "xw", "the expires_at that group.expiring was sent for", "tick"),
))

# Every key of a pool after its prefix `lc:{<pool_id>}:`, by the name the code uses. A group
# is *open* while it is enabled, has room and has not expired: the three indexes hold exactly
# the open groups, so that every strategy picks in O(log n) (app/allocator/lib.lua keeps them).
KEYS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (suffix, what it holds, writers)
    "pool": ("pool", "hash: POOL", ("pool_put", "pool_delete", "scan", "group_put")),
    "group": ("g:", "hash per group (+ group id): GROUP", ("group_put", "scan",
                                                           "group_delete")),
    "open": ("av", "zset: open group id -> position (fill, round_robin)",
             ("scan", "group_put", "group_delete", "group_reorder")),
    "open_by_fill": ("lf", "zset: open group id -> count / capacity (least_filled; kept "
                     "fresh only while the pool is least_filled)",
                     ("scan", "group_put", "group_delete", "pool_put")),
    "open_expiring": ("ex", "zset: open group id -> expires_at, for groups that expire",
                      ("scan", "group_put", "group_delete")),
    "full": ("fl", "zset: enabled groups that are full -> expires_at (+inf: never), until their "
             "code expires: with the open groups, what the pool's capacity counts",
             ("scan", "group_put", "group_delete", "tick", "pool_migrate")),
    "weights": ("fw", "hash: Fenwick tree node -> weight sum of the open groups in its "
                "range (weighted)", ("scan", "group_put", "group_delete")),
    "slots": ("fwg", "hash: slot -> group id, for every group of the pool: the index of all "
              "its groups", ("group_put", "group_delete")),
    "stats": ("st", "hash: scans since the pool was made, by outcome (OUTCOME_FIELDS). "
              "Pools from before 0.2 also hold 'n:<channel>': new allocations with that "
              "channel, which 'new' did not count then (store/stats.py adds them back)",
              ("scan", "import")),
    "hour": ("h:", "hash per hour (+ the hour's start, epoch seconds, aligned to the pool's "
             "zone): 'g:<gid>:new' and 'g:<gid>:sticky' per group (the pool's new and sticky "
             "are their sum), the pool's other outcomes (OUTCOME_FIELDS), and "
             "'c:<channel>:<outcome>' per channel; expires stats_ttl after its hour",
             ("scan", "import")),
    "visitors": ("u:", "HyperLogLog per local day (+ days since 1970-01-01 in the pool's "
                 "zone), and per channel (+ day:channel): the day's distinct visitors; "
                 "expires stats_ttl after its day", ("scan", "import")),
    "channels": ("chs", "hash: channel -> the last local day its visitors key got its expiry; "
                 "the pool's channels, at most DEFAULT.channels (later ones count as "
                 "'~other')", ("scan",)),
    "rate": ("r", "hash: minute (epoch minutes) -> new allocations in it, for the last hour: "
             "the scan rate of the forecast", ("scan",)),
    "events": ("ev", "stream: the pool's events (app/events/model.py), at most about "
               "DEFAULT.events entries", ("scan", "tick", "pool_put", "group_put",
                                         "group_delete", "group_reorder")),
    "sticky": ("v:", "string per visitor (+ visitor id): the slot of the group they got; "
               "expires after the pool's sticky_ttl", ("scan",)),
    "rate_limit": ("rl:", "string per client and minute (+ client:minute): new allocations, "
                   "when LIVECODE_SCAN_RATE_LIMIT_PER_MIN is on; expires after 120 s",
                   ("scan",)),
    "deleting": ("deleting", "string: set while a delete of the pool is under way; a pool "
                 "of that id cannot be created meanwhile (expires after 600 s)",
                 ("pool_delete", "service layer")),
}

DEFAULT_CAPACITY = 200
DEFAULT_STICKY_TTL_S = 7 * 24 * 3600
DEFAULT_WEIGHT = 1
# What the hourly buckets and the totals count: every scan that reached Redis, by outcome
# ('paused' also counts scans before valid_from and after valid_until).
OUTCOME_FIELDS = ("new", "sticky", "fallback", "paused", "limited")
DEFAULT_STATS_TTL_S = 35 * 24 * 3600
MAX_CHANNELS = 64  # per pool, then channels count as '~other'
OTHER_CHANNEL = "~other"
MAX_EVENTS = 10_000  # per pool stream, trimmed approximately
GAUGE_SLOTS = 1000  # the groups one pool_gauges.lua call reads (a scrape's bound on Redis)
ALERT_DEFAULTS = {"low_minutes": 60, "low_percent": 10, "low_every": 30, "expiring_hours": 24}
# pool.low by rate needs this many new allocations in the last 5 minutes: one scan of a small
# pool is not a rate to forecast from
LOW_EVIDENCE = 5


def suffix(name: str) -> str:
    return KEYS[name][0]


def lua_tables(
    constants: Iterable[tuple[str, Mapping[str, str]]] = (),
) -> list[tuple[str, Mapping[str, str]]]:
    """The schema as named tables, for the scripts: POOL and GROUP map names to stored fields,
    KEY names to key suffixes, DEFAULT the defaults; `constants` adds more (the script
    protocol's)."""
    return [
        ("POOL", {f.name: f.stored for f in POOL.fields}),
        ("GROUP", {f.name: f.stored for f in GROUP.fields}),
        ("KEY", {name: v[0] for name, v in KEYS.items()}),
        ("DEFAULT", {"capacity": str(DEFAULT_CAPACITY), "sticky_ttl": str(DEFAULT_STICKY_TTL_S),
                     "weight": str(DEFAULT_WEIGHT), "channels": str(MAX_CHANNELS),
                     "other_channel": OTHER_CHANNEL, "events": str(MAX_EVENTS),
                     "stats_ttl": str(DEFAULT_STATS_TTL_S), "low_evidence": str(LOW_EVIDENCE),
                     "gauge_slots": str(GAUGE_SLOTS),
                     **{k: str(v) for k, v in ALERT_DEFAULTS.items()}}),
        *constants,
    ]


def lua_prelude(tables: Iterable[tuple[str, Mapping[str, str]]]) -> str:
    """Lua locals of the tables that a script uses as tables (read(key, POOL, ...))."""
    lines = ["-- Generated from app/store/schema.py and app/allocator/protocol.py."]
    for table, entries in tables:
        body = ", ".join(f"{k} = {lua_string(v)}" for k, v in entries.items())
        lines.append(f"local {table} = {{{body}}}")
    return "\n".join(lines) + "\n"


def lua_string(value: str) -> str:
    if not all(c.isalnum() or c in "_:-~.| " for c in value):
        raise ValueError(f"not a plain Lua string: {value!r}")
    return f"'{value}'"
