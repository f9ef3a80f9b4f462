"""The transport's primitives (pcsid_async._pacing): the concurrency gate (bounded, FIFO,
cancellation-safe), the pacer and the shared-timer deadlines (asyncio.timeout's semantics:
never early, a caller's cancel wins)."""

from __future__ import annotations

import asyncio
import sys

import pytest
from conftest import ClientFactory

from pcsid_async._pacing import _Deadlines, _Gate
from pcsid_async.testing import FakeClearTax


async def test_requests_in_flight_never_exceed_max_connections(
    make_client: ClientFactory,
) -> None:
    async with FakeClearTax(
        token="t0k3n-for-gate", vats=("300000000000003",), latency=0.01
    ) as fake:
        activity_ids = [fake.create_activity(delay=0) for _ in range(4)]
        client = make_client(
            fake.url, auth_token="t0k3n-for-gate", vat="300000000000003", max_connections=3
        )
        results = await asyncio.gather(*(client.get_status(a) for a in activity_ids * 5))
    assert [r.activity_id for r in results] == activity_ids * 5
    assert 2 <= fake.max_in_flight <= 3


async def test_free_slots_are_taken_without_waiting_and_returned() -> None:
    gate = _Gate(2)
    assert gate.try_take()
    assert gate.try_take()
    assert not gate.try_take()
    gate.give()
    assert gate.try_take()


async def test_waiters_get_slots_in_arrival_order() -> None:
    gate = _Gate(1)
    assert gate.try_take()
    order: list[int] = []

    async def waiter(n: int) -> None:
        await gate.take()
        order.append(n)
        gate.give()

    tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)  # all five queued
    assert not gate.try_take()  # a newcomer does not overtake the queue, even after a give
    gate.give()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate.try_take()
    assert not gate.try_take()  # exactly one slot again: none leaked, none invented


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    gate = _Gate(1)
    assert gate.try_take()
    first = asyncio.create_task(gate.take())
    second = asyncio.create_task(gate.take())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert first.cancelled()
    gate.give()  # goes to the second waiter, not to the cancelled one
    await asyncio.wait_for(second, timeout=1)
    assert not gate.try_take()
    gate.give()
    assert gate.try_take()


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    gate = _Gate(1)
    assert gate.try_take()
    first = asyncio.create_task(gate.take())
    second = asyncio.create_task(gate.take())
    await asyncio.sleep(0)
    gate.give()  # handed to the first waiter ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0)
    assert first.cancelled()
    await asyncio.wait_for(second, timeout=1)  # the slot went on to the second
    assert not gate.try_take()
    gate.give()
    assert gate.try_take()
    assert not gate.try_take()


needs_uncancel = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="deadlines are used on 3.11+ (Task.uncancel)"
)


async def _guarded(deadlines: _Deadlines, seconds: float, work: float) -> str:
    """Run ``work`` seconds of sleep under a deadline; say how it ended."""
    deadline = deadlines.start(seconds)
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError as exc:
        if deadline.close(exc):
            return "timed out"
        raise
    deadline.close(None)
    return "done"


@needs_uncancel
async def test_deadlines_expire_never_early_and_spare_finished_work() -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    started = loop.time()
    outcomes = await asyncio.gather(
        *(_guarded(deadlines, 0.05, 1.0) for _ in range(20)),  # one shared timer ...
        *(_guarded(deadlines, 0.05, 0.001) for _ in range(20)),  # ... spares these
        _guarded(deadlines, 0.2, 0.1),
    )
    elapsed = loop.time() - started
    assert outcomes == ["timed out"] * 20 + ["done"] * 21
    assert 0.1 <= elapsed < 0.9  # the longest finished work; no sleep ran to its end


@needs_uncancel
async def test_a_deadline_fires_at_or_after_its_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    started = loop.time()
    assert await _guarded(deadlines, 0.03, 5.0) == "timed out"
    assert loop.time() - started >= 0.03


@needs_uncancel
@pytest.mark.parametrize("deadline_first", [True, False])
async def test_a_callers_cancellation_in_the_same_turn_as_the_deadline_wins(
    deadline_first: bool,
) -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    task = asyncio.create_task(_guarded(deadlines, 10.0, 5.0))
    await asyncio.sleep(0)  # the task is asleep under its deadline
    (slice_end,) = deadlines._buckets
    if deadline_first:
        deadlines._expire(slice_end)  # the shared timer fires ...
        task.cancel()  # ... and the caller cancels before the task runs again
    else:
        task.cancel()
        deadlines._expire(slice_end)
    with pytest.raises(asyncio.CancelledError):
        await task  # a cancellation, not a timeout: nobody retries it away


@needs_uncancel
async def test_expired_and_finished_deadlines_leave_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    await asyncio.gather(_guarded(deadlines, 0.01, 1.0), _guarded(deadlines, 0.01, 0.0))
    await asyncio.sleep(0.03)  # every slice's timer has run
    assert deadlines._buckets == {}
