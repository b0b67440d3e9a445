"""RESP: packing commands, by hiredis or by hand, and the scripts they call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import hiredis

Arg = bytes | str | int | float

pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


@dataclass(frozen=True)
class Script:
    body: bytes
    sha: bytes  # sha1 hex digest of body, as ASCII bytes
    # A script that is also a function library (Redis 7+) is called by FCALL of `function`,
    # and `library` is loaded when the server does not have it; `body` stays its EVAL twin.
    function: bytes = b""
    library: bytes = b""
    command: tuple[bytes, bytes] = field(init=False)  # (b"EVALSHA", sha) or (b"FCALL", name)
    head: bytes = field(init=False)  # command, packed: what follows a call's argument count

    def __post_init__(self) -> None:
        command = (b"FCALL", self.function) if self.function else (b"EVALSHA", self.sha)
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "head", bulk(command[0]) + bulk(command[1]))

    @classmethod
    def from_source(cls, source: str, *, function: str = "", library: str = "") -> Script:
        body = source.encode()
        return cls(body=body, sha=hashlib.sha1(body).hexdigest().encode(),
                   function=function.encode(), library=library.encode())

    def load_command(self) -> bytes:
        """FUNCTION LOAD of its library, packed (REPLACE: two callers may load it at once)."""
        return pack((b"FUNCTION", b"LOAD", b"REPLACE", self.library))


def bulk(value: bytes) -> bytes:
    """One RESP bulk string, for commands packed by hand."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def as_eval(script: Script, call: bytes) -> bytes:
    """The EVAL twin of a packed call of `script` (EVALSHA or FCALL): the same keys and
    arguments."""
    count_end = call.index(b"\r\n") + 2
    if not call.startswith(script.head, count_end):
        raise ValueError("not a packed call of this script")
    rest = call[count_end + len(script.head) :]
    return call[:count_end] + b"$4\r\nEVAL\r\n" + bulk(script.body) + rest
