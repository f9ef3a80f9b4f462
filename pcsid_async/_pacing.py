"""The transport's admission and time primitives: the concurrency gate, the pacer, deadlines.

- :class:`_Gate`: a FIFO counting gate at or below the connector's limit.
- :class:`_Pacer`: a client-wide pause (the server's ``Retry-After``) and the optional
  ``rate_limit`` spacing.
- :class:`_Deadlines`: per-attempt deadlines with ``asyncio.timeout``'s semantics, sharing timers.

None of them sends anything; :mod:`pcsid_async._transport` composes them around each attempt.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sys
from typing import Any, Final

import aiohttp


class _Pacer:
    """A client-wide pause (server's Retry-After) and an optional requests-per-second spacing."""

    __slots__ = ("_interval", "_last_start", "_next_slot", "_paused_until")

    def __init__(self, rate_limit: float | None) -> None:
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        self._next_slot = 0.0
        self._last_start = -math.inf
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        """The loop time until which no new request may start."""
        return self._paused_until

    @property
    def idle(self) -> bool:
        """Whether no pause was ever asked for and there is no rate limit: nothing to wait for.

        Checked before :meth:`wait`, so the usual request skips a coroutine and a clock read.
        """
        return not (self._interval or self._paused_until)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` from now (never shortens a running pause)."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(until, self._paused_until)

    async def wait(self) -> None:
        """Return when a new request may start."""
        loop = asyncio.get_running_loop()
        slot: float | None = None
        while True:
            now = loop.time()
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._interval:
                if slot is None:  # our place in line, kept across pauses and re-checks
                    slot = max(now, self._next_slot)
                    self._next_slot = slot + self._interval
                # Also one interval after the last actual start: when a busy loop wakes
                # overdue waiters together, they must not go out in a burst.
                start = max(slot, self._last_start + self._interval)
                if start > now:
                    await asyncio.sleep(start - now)
                    continue
                self._last_start = now
            return


class _Gate:
    """A FIFO counting gate: ``asyncio.Semaphore`` without its per-call coroutines.

    Taking a free slot is a plain method call (every request takes one); only a request
    that must queue awaits. A slot is handed straight to the oldest waiter, so a request
    arriving later never overtakes one already queued.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is queued; never waits."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait in line for a slot (after :meth:`try_take` said no)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Return a slot: to the oldest waiter still waiting, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


# Python 3.11 added Task.cancelling()/uncancel(), which tell our timer's cancellation from a
# caller's; 3.10 has neither, so there aiohttp's own timer is used.
# While one of our deadlines runs, aiohttp's own timer is off.
_HAS_UNCANCEL: Final = sys.version_info >= (3, 11)
_NO_AIOHTTP_TIMER: Final = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)


class _Deadline:
    """One attempt's deadline: an entry of :class:`_Deadlines` (plain slots, no ``__init__``)."""

    __slots__ = ("bucket", "cancelling", "fired", "task")

    bucket: set[_Deadline]
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
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (_HAS_UNCANCEL)
            mine = self.task.uncancel() <= self.cancelling
            return mine and isinstance(exc, asyncio.CancelledError)
        return False  # pragma: no cover


class _Deadlines:
    """Per-attempt deadlines of one client, with ``asyncio.timeout``'s semantics, sharing timers.

    aiohttp's own total timer un-cancels the task once per nested use, so a caller's
    cancellation that lands with it is turned into a timeout and retried away. Like
    ``asyncio.timeout`` (3.11+), a deadline here cancels its task when it expires and counts
    cancellations on exit (see :meth:`_Deadline.close`).

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
        self._buckets: dict[int, set[_Deadline]] = {}

    def start(self, seconds: float) -> _Deadline:
        """A deadline ``seconds`` from now for the current task."""
        loop = self._loop
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - call() only ever runs inside a task
            raise RuntimeError("a request deadline needs a running task")
        deadline = _Deadline()
        deadline.task = task
        deadline.cancelling = 0
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (_HAS_UNCANCEL)
            deadline.cancelling = task.cancelling()
        deadline.fired = False
        grain = min(50_000, max(500, int(seconds * 31_250)))  # 1/32 of it, in microseconds
        key = math.ceil((loop.time() + seconds) * 1_000_000 / grain) * grain
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            loop.call_at(key / 1_000_000, self._expire, key)
        bucket.add(deadline)
        deadline.bucket = bucket
        return deadline

    def _expire(self, key: int) -> None:
        for deadline in self._buckets.pop(key):
            deadline.fired = True
            deadline.task.cancel()
