"""The API's QR decodes: each in its own short-lived child process, a few at a time.

A decode is seconds of CPU in C code and up to a hundred-odd MB: in the server it held the GIL
and the event loop (scans waited behind it) and its freed buffers stayed in the worker. In a
child (`python -m app.qrdecode`, which imports only Pillow and zxing-cpp: ~20 MB, ~70 ms to
start) it runs at idle priority, cannot pass its address-space limit, and gives every byte back
when it exits. At most DECODE_SLOTS run at once per server process and DECODE_QUEUE more
wait for a slot; past that an upload gets 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from app import qr
from app.errors import InvalidInput, LivecodeError
from app.qrdecode import MAX_UPLOAD_BYTES
from app.schemas import GroupCreate

DECODE_SLOTS = 2
DECODE_QUEUE = 4
DECODE_TIMEOUT_S = 20.0
RETRY_AFTER_S = 2
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # the `app` the child imports


class DecoderBusy(LivecodeError):
    status = 429
    code = "too_many_decodes"

    def __init__(self) -> None:
        super().__init__(
            "too many images are being decoded, try again shortly",
            {"max_concurrent": DECODE_SLOTS, "max_waiting": DECODE_QUEUE},
        )
        self.headers = {"Retry-After": str(RETRY_AFTER_S)}


# The children are started and waited for from these threads. From the event loop, uvloop forks
# the whole server and waits for the child's exec: 10-60 ms stalls measured here. subprocess
# uses vfork, which holds the GIL only until the exec (a few ms), and the waits release it.
_threads = ThreadPoolExecutor(DECODE_SLOTS, "qr-decode")


def _idle_priority(pid: int) -> None:
    """The child gets the CPU only when nothing else wants it (SCHED_IDLE): a waking scan
    preempts it at once. Set from here, right after its exec, not in the threads (they take
    the GIL: at idle priority one could hold it while starved) nor in the child (its imports
    would run before)."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # gone already, or not Linux
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


class _Limiter:
    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(DECODE_SLOTS)
        self.admitted = 0


_limiters: WeakKeyDictionary[asyncio.AbstractEventLoop, _Limiter] = WeakKeyDictionary()


async def read_texts(data: bytes) -> list[str]:
    """The texts of the QR codes in the image, read in a child process; InvalidInput when the
    image is refused, DecoderBusy when too many decodes are running or waiting."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = _Limiter()
    if limiter.admitted >= DECODE_SLOTS + DECODE_QUEUE:
        raise DecoderBusy()
    limiter.admitted += 1
    try:
        await limiter.slots.acquire()
        try:
            decoding = loop.run_in_executor(_threads, _in_child, data)
        except BaseException:
            limiter.slots.release()
            raise
        # the slot is free once the child is gone, even if the request goes away before
        decoding.add_done_callback(lambda _: limiter.slots.release())
        answer = await asyncio.shield(decoding)
    finally:
        limiter.admitted -= 1
    if "error" in answer:
        raise InvalidInput(str(answer["error"]), answer.get("details"))
    return [str(text) for text in answer["texts"]]


async def url_from_upload(image: bytes) -> str:
    """The invite URL in an uploaded image of a group's QR code: refused early by size and
    type, decoded in a child process."""
    qr.check_upload(image)
    return qr.first_url(await read_texts(image))


async def group_from_upload(image: bytes, fields: dict[str, Any]) -> GroupCreate:
    """A group from the uploaded image of its QR code (the API's and the console's uploads),
    with the WeChat defaults."""
    return qr.group_from_url(await url_from_upload(image), fields)


def _in_child(data: bytes) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    with subprocess.Popen(
        [sys.executable, "-m", "app.qrdecode"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as proc:
        _idle_priority(proc.pid)
        try:
            out, _ = proc.communicate(data[: MAX_UPLOAD_BYTES + 1], DECODE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"error": f"the image took longer than {DECODE_TIMEOUT_S:.0f} s to decode",
                    "details": None}
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not ("texts" in answer or "error" in answer):
        # killed at its memory limit or crashed in a codec: either way the image is at fault
        return {"error": "the image could not be decoded", "details": None}
    return answer
