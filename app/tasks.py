"""Background tasks that stop when cancelled."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """On Python 3.11, asyncio.wait_for (which redis-py wraps around every command it sends)
    swallows a cancellation that arrives as the command completes (python/cpython#86296): the
    task is marked as cancelling but goes on. A loop that awaits Redis calls this after them,
    or cancelling it would not stop it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
