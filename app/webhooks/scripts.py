"""The webhook Lua scripts, loaded from package files once (see app/allocator/scripts.py for the
`#!lua` shebang: on Redis 7+ it keeps a script inside its cluster slot)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

NAMES = ("put_webhook", "delete_webhook", "enqueue", "claim", "record", "redeliver")


@cache
def source(name: str, *, shebang: bool) -> str:
    if name not in NAMES:
        raise KeyError(name)
    pkg = files("app.webhooks")
    lib = (pkg / "lib.lua").read_text(encoding="utf-8")
    body = (pkg / f"{name}.lua").read_text(encoding="utf-8")
    return ("#!lua\n" if shebang else "") + lib + "\n" + body
