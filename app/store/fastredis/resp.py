"""RESP: packing commands, by hiredis or by hand, and the scripts they call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import hiredis

Arg = bytes | str | int | float

pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


@dataclass(frozen=True)
class Script:
    body: bytes
    sha: bytes  # sha1 hex digest of body, as ASCII bytes

    @classmethod
    def from_source(cls, source: str) -> Script:
        body = source.encode()
        return cls(body=body, sha=hashlib.sha1(body).hexdigest().encode())


def bulk(value: bytes) -> bytes:
    """One RESP bulk string, for commands packed by hand."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def as_eval(script: Script, evalsha: bytes) -> bytes:
    """The EVAL twin of a packed EVALSHA of `script`: the same keys and arguments."""
    count_end = evalsha.index(b"\r\n") + 2
    head = b"$7\r\nEVALSHA\r\n" + bulk(script.sha)
    if not evalsha.startswith(head, count_end):
        raise ValueError("not a packed EVALSHA of this script")
    rest = evalsha[count_end + len(head) :]
    return evalsha[:count_end] + b"$4\r\nEVAL\r\n" + bulk(script.body) + rest
