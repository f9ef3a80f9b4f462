"""Flow primitives of the transport: the concurrency gate and the client-wide pacer.

:class:`Gate` bounds the requests in flight (FIFO, cancellation-safe). :class:`Pacer` holds
every new request while a server's ``Retry-After`` runs and spaces starts to ``rate_limit``
against an ideal timeline (virtual scheduling; see its docstring for the burst it allows and
the 1 s window bound it keeps).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from typing import Final

__all__ = ["Gate", "Pacer"]


# How late (in seconds) the event loop may start a request and still have the lost time made
# up: above the usual timer lateness (epoll rounds waits up to whole ms; a busy loop adds more),
# below any pause a person would call a stall.
_LATENESS_ALLOWANCE: Final = 0.010
# ``rate_limit`` counts requests per second: the window every 1 s bound refers to.
_WINDOW: Final = 1.0
# The limit is counted where requests arrive, after a trip whose length varies: the client's
# own 1 s bound keeps this much room for that (at 200/s: 2,000 renewals put 201 arrivals in
# one second without it).
_ARRIVAL_MARGIN: Final = 0.005


class Pacer:
    """A client-wide pause (server's Retry-After) and an optional requests-per-second limit.

    The limit is virtual scheduling (GCRA) on an ideal timeline, not spacing from the last
    actual start (which lets the event loop's lateness add up: 0.82 x the limit at 200/s).
    Each start has a slot; slots are an interval ``T = (1 s + J + M) / rate_limit`` apart,
    with ``J`` the lateness allowance (10 ms) and ``M`` the arrival margin (5 ms); a request
    never starts before its slot, and they start in the order they asked (FIFO).

    - Late starts: a request the loop starts at most ``J`` after its slot leaves the next
      slot where it was, so lateness never accumulates and a busy consumer gets
      ``rate_limit / (1 + (J + M)/1 s)``, 0.985 x the limit. Later than ``J`` (a stalled
      loop, or nobody was waiting: idle) the timeline restarts at that start: no burst makes
      up for the stall, and idle time banks at most ``J`` of credit.
    - The bound: any ``n + 1`` starts span at least ``n T - J``, so ``rate_limit + 1``
      starts span at least 1 s + M: no 1 s window ever holds more than ``rate_limit`` starts
      (``ceil(rate_limit)`` for a fractional one), nor, unless transit times differ by more
      than M, arrivals at the server. The burst is that tolerance: two starts are never
      closer than ``T - J`` (at most ``1 + J/T`` together, only to make up lateness; one at
      a time below 100/s).
    - Pauses: a ``Retry-After`` holds every start until it ends and moves the timeline to
      its end, so the requests held back go out one interval apart from then, not at once.

    Times are ``time.monotonic()``: uvloop's ``loop.time()`` is a cached millisecond clock,
    and its timers may fire early by that much; a release that comes early waits again.
    """

    __slots__ = ("_interval", "_paused_until", "_slot", "_timer", "_waiters")

    def __init__(self, rate_limit: float | None) -> None:
        self._interval = (
            (_WINDOW + _LATENESS_ALLOWANCE + _ARRIVAL_MARGIN) / rate_limit if rate_limit else 0.0
        )
        self._slot = -math.inf  # the next start's place on the timeline (GCRA's TAT)
        self._paused_until = 0.0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def paused_until(self) -> float:
        """The ``time.monotonic()`` until which no new request may start."""
        return self._paused_until

    @property
    def idle(self) -> bool:
        """Whether no pause was ever asked for and there is no rate limit: nothing to wait for.

        Checked before :meth:`wait`, so the usual request skips a coroutine and a clock read.
        """
        return not (self._interval or self._paused_until)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` from now (never shortens a running pause)."""
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._slot = max(self._slot, until)  # no catch-up burst once the pause ends

    async def wait(self) -> None:
        """Return when a new request may start (at once if its slot has come, nobody queued)."""
        if not self._waiters and self._admit(time.monotonic()):
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._arm(loop)
        try:
            await waiter
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # not there: it was let through, slot spent
                self._waiters.remove(waiter)
            raise

    def _admit(self, now: float) -> bool:
        """Take the next slot if a request may start at ``now``."""
        if now < self._paused_until:
            return False
        interval = self._interval
        if interval:
            slot = self._slot
            if now < slot:
                return False
            # At most the allowance late: the timeline holds. Later: it restarts now.
            self._slot = (slot if now - slot <= _LATENESS_ALLOWANCE else now) + interval
        return True

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        delay = max(self._paused_until, self._slot) - time.monotonic()
        self._timer = loop.call_later(max(delay, 0.0), self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let through, in order, every queued request whose slot has come; re-arm for the rest."""
        self._timer = None
        waiters = self._waiters
        now = time.monotonic()
        while waiters:
            if waiters[0].done():  # cancelled, and its task has not run to leave the line yet
                waiters.popleft()
            elif self._admit(now):
                waiters.popleft().set_result(None)
            else:
                self._arm(loop)
                return


class Gate:
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
