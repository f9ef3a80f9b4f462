"""The transport's concurrency gate: a bound on requests in flight, FIFO, cancellation-safe."""

from __future__ import annotations

import asyncio

from conftest import ClientFactory

from pcsid_async._transport import _Gate
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
