"""What can go wrong with a call, as exception types: the server's error replies are mapped to
them here, once, by their error code."""

from __future__ import annotations

from typing import Any

import hiredis

ReplyErrorValue = hiredis.ReplyError  # how the parser hands over an error reply


class RedisUnavailable(Exception):
    """Connect failure, lost connection, timeout or overload: the outcome is unknown or the
    command was never executed. Never retried by this client."""

    kind = "unavailable"


class RedisTimeout(RedisUnavailable):
    """No reply within the call's deadline: the command may have run."""

    kind = "timeout"


class RedisReplyError(Exception):
    """The server answered with an error reply."""

    kind = "reply"

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class NoScript(RedisReplyError):
    """NOSCRIPT: the script is not in the server's cache (a restart, a failover, SCRIPT
    FLUSH), or its function is not loaded (a restart without persistence, FUNCTION FLUSH, a
    node that never had it); it did not run, so sending it again with EVAL is safe."""


class TopologyChanged(RedisReplyError):
    """The key is not served here (any more): a cluster slot moved or is migrating, the cluster
    is down, or this server is a replica or still loading. The command did not run."""


_BY_CODE: dict[str, type[RedisReplyError]] = {
    "NOSCRIPT": NoScript,
    **dict.fromkeys(("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING",
                     "MASTERDOWN"), TopologyChanged),
}


def reply_error(reply: Any) -> RedisReplyError:
    """The exception for an error reply (or anything that is not the reply expected)."""
    text = str(reply)
    if text.startswith(_NO_FUNCTION):
        return NoScript(text)
    return _BY_CODE.get(text.split(" ", 1)[0], RedisReplyError)(text)


_NO_FUNCTION = "ERR Function not found"  # FCALL of a function the server does not have
