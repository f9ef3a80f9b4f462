"""Per-attempt deadlines with ``asyncio.timeout``'s semantics, sharing one timer per slice.

Never early on any loop: a deadline is timed on ``time.monotonic()`` (not the loop's clock,
which uvloop caches per iteration in whole milliseconds) and a timer that fires before that
instant re-arms itself instead of cancelling anything.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any, Final

import aiohttp

__all__ = ["HAS_UNCANCEL", "NO_AIOHTTP_TIMER", "Deadline", "Deadlines"]

# Python 3.11 added Task.cancelling()/uncancel(), which tell our timer's cancellation from a
# caller's; 3.10 has neither, so there aiohttp's own timer is used.
HAS_UNCANCEL: Final = sys.version_info >= (3, 11)
NO_AIOHTTP_TIMER: Final = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)
# Added to a re-armed timer: a loop clock in whole milliseconds may wake it up to 1 ms early.
_REARM_SLACK: Final = 0.001


class Deadline:
    """One attempt's deadline: an entry of :class:`Deadlines` (plain slots, no ``__init__``)."""

    __slots__ = ("bucket", "cancelling", "fired", "task")

    bucket: set[Deadline]
    cancelling: int
    fired: bool
    task: asyncio.Task[Any]

    def close(self, exc: BaseException | None) -> bool:
        """End the deadline; ``True`` when ``exc`` is its own cancellation (a timeout).

        Like ``asyncio.timeout``'s exit: the CancelledError becomes a timeout only if nobody
        else asked to cancel the task meanwhile, so a caller's cancellation always wins.
        """
        self.bucket.discard(self)
        if not self.fired:
            return False
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (HAS_UNCANCEL)
            mine = self.task.uncancel() <= self.cancelling
            return mine and isinstance(exc, asyncio.CancelledError)
        return False  # pragma: no cover


class Deadlines:
    """Per-attempt deadlines of one client, with ``asyncio.timeout``'s semantics, sharing timers.

    aiohttp's own total timer un-cancels the task once per nested use, so a caller's
    cancellation that lands with it is turned into a timeout and retried away. Like
    ``asyncio.timeout`` (3.11+), a deadline here cancels its task when it expires and counts
    cancellations on exit (see :meth:`Deadline.close`).

    The difference is cost. A timer per request means a Python ``TimerHandle``, a push onto
    the loop's heap (log n Python comparisons, and n grows with every cancelled handle until
    the loop cleans up) and a cancel. Here deadlines that expire in the same slice of time
    share one timer: each slice is 1/32 of the timeout (between 0.5 and 50 ms), and a
    deadline fires at the end of its slice, so up to that much late and never early. At
    thousands of requests a second most requests add themselves to a set and leave it.
    """

    __slots__ = ("_buckets", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[Deadline]] = {}

    def start(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now for the current task."""
        loop = self._loop
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - call() only ever runs inside a task
            raise RuntimeError("a request deadline needs a running task")
        deadline = Deadline()
        deadline.task = task
        deadline.cancelling = 0
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (HAS_UNCANCEL)
            deadline.cancelling = task.cancelling()
        deadline.fired = False
        grain = min(50_000, max(500, int(seconds * 31_250)))  # 1/32 of it, in microseconds
        now = time.monotonic()
        key = math.ceil((now + seconds) * 1_000_000 / grain) * grain  # monotonic microseconds
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            loop.call_later(key / 1_000_000 - now, self._expire, key)
        bucket.add(deadline)
        deadline.bucket = bucket
        return deadline

    def _expire(self, key: int) -> None:
        early = key / 1_000_000 - time.monotonic()
        if early > 0:  # the loop's clock ran behind ours: not yet, look again
            self._loop.call_later(early + _REARM_SLACK, self._expire, key)
            return
        for deadline in self._buckets.pop(key):
            deadline.fired = True
            deadline.task.cancel()
