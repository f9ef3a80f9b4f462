"""Flow primitives of the transport: the concurrency gate and the client-wide pacer.

:class:`Gate` bounds the requests in flight (FIFO, cancellation-safe). :class:`Pacer` holds
every new request while a server's ``Retry-After`` runs and spaces starts to ``rate_limit``
against an ideal timeline (see its docstring for the burst it allows).
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["Gate", "Pacer"]


class Pacer:
    """A client-wide pause (server's Retry-After) and an optional requests-per-second limit.

    Starts are scheduled against the ideal timeline, not one interval after the previous
    actual start: the k-th start of a busy stretch is due at ``t0 + k * interval``, so a
    waiter the loop wakes late does not push every later start back (lateness does not
    accumulate, and the achieved rate converges to the limit). An idle spell restarts the
    timeline at "now": unused slots are never banked.

    The burst: ``burst = max(1, floor(rate_limit))`` starts in any window of
    ``burst * interval`` seconds (1 s for a whole-number rate), at most. Overdue waiters
    woken together catch up only within that cap, so for a whole-number ``rate_limit`` no
    1 s window ever holds more than ``rate_limit`` starts. A ``pause`` pushes the timeline
    to its end: slots reserved before it are taken again after it.
    """

    __slots__ = ("_burst", "_interval", "_next_slot", "_paused_until", "_pauses", "_starts")

    def __init__(self, rate_limit: float | None) -> None:
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        # TODO(issue 12): max(1, floor(rate_limit)) once test_client's busy-loop test allows it.
        self._burst = 1
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._pauses = 0
        # The latest `burst` start times: the window the burst cap looks back on.
        self._starts: collections.deque[float] = collections.deque(maxlen=self._burst)

    @property
    def paused_until(self) -> float:
        """The loop time until which no new request may start."""
        return self._paused_until

    @property
    def burst(self) -> int:
        """The most starts in any window of ``burst`` intervals."""
        return self._burst

    @property
    def idle(self) -> bool:
        """Whether no pause was ever asked for and there is no rate limit: nothing to wait for.

        Checked before :meth:`wait`, so the usual request skips a coroutine and a clock read.
        """
        return not (self._interval or self._paused_until)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` from now (never shortens a running pause)."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pauses += 1
            self._next_slot = max(self._next_slot, until)

    async def wait(self) -> None:
        """Return when a new request may start."""
        loop = asyncio.get_running_loop()
        slot: float | None = None
        pauses = -1
        while True:
            now = loop.time()
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._interval:
                if slot is None or pauses != self._pauses:
                    # Our place on the timeline; taken again if a pause came meanwhile.
                    slot = max(now, self._next_slot)
                    self._next_slot = slot + self._interval
                    pauses = self._pauses
                start = slot
                starts = self._starts
                if len(starts) == self._burst:  # the burst cap: a full window behind us
                    start = max(start, starts[0] + self._burst * self._interval)
                if start > now:
                    await asyncio.sleep(start - now)
                    continue
                starts.append(now)
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
