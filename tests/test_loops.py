"""Event loops: a client binds to the first loop that uses it; another loop gets a clear error.

A client built outside any loop (at import time, as FastAPI globals are) binds to the first
running loop that uses it. Used (or closed) from another loop, it raises
``EventLoopMismatchError`` (a ``PcsidError`` and a ``RuntimeError``) before anything is sent,
and nothing leaks: a client left open when ``asyncio.run`` ends is closed by the loop's
shutdown, so no "Unclosed client session" or unclosed socket warning follows.

These tests are plain functions that call ``asyncio.run`` themselves; the fake server runs in
a loop of its own thread, so it outlives each ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from _scripted import TOKEN, VAT, quick_retry
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pcsid_async import EventLoopMismatchError, PcsidClient, PcsidError, RenewalRequest
from pcsid_async.testing import FakeClearTax

_T = TypeVar("_T")


class _LoopThread:
    """An event loop running in a thread of its own, to run coroutines on from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[_T]) -> _T:
        async def wrapped() -> _T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture
def fake_thread() -> Iterator[tuple[FakeClearTax, _LoopThread]]:
    """A FakeClearTax served from its own thread's loop (which outlives any asyncio.run)."""
    thread = _LoopThread()
    fake = FakeClearTax(token=TOKEN, vats=(VAT,))
    thread.run(fake.start())
    try:
        yield fake, thread
    finally:
        thread.run(fake.close())
        thread.stop()


def _client(fake: FakeClearTax) -> PcsidClient:
    return PcsidClient(TOKEN, VAT, base_url=fake.url, retry=quick_retry(), timeout=5.0)


def _device(fake: FakeClearTax, thread: _LoopThread) -> tuple[str, str]:
    async def make() -> tuple[str, str]:
        return fake.add_device(), fake.issue_otp()

    return thread.run(make())


def _no_leak_warnings() -> list[str]:
    """Collect garbage and return any ResourceWarning it raised (unclosed session, socket)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


class TestBinding:
    def test_a_client_built_outside_a_loop_binds_to_the_first_that_uses_it(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        client = _client(fake)  # import time: no loop is running
        device, otp = _device(fake, thread)

        async def renew() -> str:
            result = await client.renew(device, otp)
            await client.close()
            return result.status.value

        assert asyncio.run(renew()) == "GENERATED"
        assert _no_leak_warnings() == []

    def test_reuse_after_asyncio_run_raises_a_clear_error_and_leaks_nothing(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        client = _client(fake)
        device, otp = _device(fake, thread)
        asyncio.run(client.renew(device, otp))  # left open: its loop's shutdown closes it
        assert _no_leak_warnings() == []
        other, other_otp = _device(fake, thread)

        async def again() -> None:
            await client.renew(other, other_otp)

        with pytest.raises(EventLoopMismatchError) as info:
            asyncio.run(again())
        assert isinstance(info.value, PcsidError)
        assert isinstance(info.value, RuntimeError)
        message = str(info.value)
        assert "closed since (an earlier asyncio.run()" in message
        assert "one client per loop" in message
        assert "lifespan" in message
        assert _no_leak_warnings() == []
        assert thread.run(_ledger_size(fake, other)) == 0  # nothing was sent

    def test_async_with_and_renew_many_from_another_loop_raise_before_any_outcome(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, _ = fake_thread
        client = _client(fake)
        asyncio.run(_touch(client))

        async def enter() -> None:
            async with client:
                pass  # pragma: no cover - never entered

        async def batch() -> list[Any]:
            rows = [RenewalRequest(f"dev-{i}", "123456") for i in range(50)]
            return [outcome async for outcome in client.renew_many(rows)]

        with pytest.raises(EventLoopMismatchError):
            asyncio.run(enter())
        with pytest.raises(EventLoopMismatchError):
            asyncio.run(batch())  # one error, not 50 FAILED outcomes
        assert _no_leak_warnings() == []


async def _touch(client: PcsidClient) -> None:
    """Bind ``client`` to the running loop (its session is made on first use)."""
    await client.__aenter__()


async def _ledger_size(fake: FakeClearTax, device: str) -> int:
    return len(fake.ledger.get(device, ()))


class TestOtherThreadsLoop:
    def test_use_and_close_from_another_loop_are_refused_while_its_loop_lives(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        client = _client(fake)
        device, otp = _device(fake, thread)
        assert thread.run(client.renew(device, otp)).ok  # bound to the thread's loop

        async def status() -> None:
            await client.get_status("any-activity")

        with pytest.raises(EventLoopMismatchError, match="a loop running in another thread"):
            asyncio.run(status())
        with pytest.raises(EventLoopMismatchError, match="was closed from an event loop"):
            asyncio.run(client.close())
        assert not client.closed  # still usable in its own loop
        thread.run(client.close())  # and closed there
        assert client.closed
        assert _no_leak_warnings() == []

    def test_closing_a_client_whose_loop_has_closed_marks_it_closed(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        client = _client(fake)
        device, otp = _device(fake, thread)
        asyncio.run(client.renew(device, otp))
        asyncio.run(client.close())  # from a new loop: nothing left to await
        assert client.closed
        assert _no_leak_warnings() == []

    def test_a_loop_not_running_now_is_named_as_such(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, _ = fake_thread
        client = _client(fake)
        idle = asyncio.new_event_loop()
        try:
            idle.run_until_complete(_touch(client))

            async def status() -> None:
                await client.get_status("any-activity")

            with pytest.raises(EventLoopMismatchError, match="another loop, not running now"):
                asyncio.run(status())
            idle.run_until_complete(client.close())
        finally:
            idle.close()
        assert _no_leak_warnings() == []


def _app(get_client: Callable[[web.Application], PcsidClient]) -> web.Application:
    """A web app whose handler renews one device through ``get_client(app)``."""

    async def renew(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            result = await get_client(request.app).renew(body["device"], body["otp"])
        except PcsidError as exc:
            return web.json_response({"error": type(exc).__name__, "text": str(exc)}, status=502)
        return web.json_response({"status": result.status.value})

    app = web.Application()
    app.router.add_post("/renew", renew)
    return app


async def _drive(app: web.Application, device: str, otp: str) -> tuple[int, dict[str, Any]]:
    """One "test client" of ``app``: start it in this loop, make one request, stop it."""
    async with TestClient(TestServer(app)) as http:
        response = await http.post("/renew", json={"device": device, "otp": otp})
        return response.status, await response.json()


class TestTwoTestClientsOfOneApp:
    def test_a_module_level_client_works_once_then_says_what_to_do(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        module_level = _client(fake)  # `client = PcsidClient(...)` at import time

        runs = []
        for _ in range(2):  # two test clients in sequence, each in its own loop
            device, otp = _device(fake, thread)
            runs.append(asyncio.run(_drive(_app(lambda app: module_level), device, otp)))

        assert runs[0] == (200, {"status": "GENERATED"})
        status, body = runs[1]
        assert status == 502
        assert body["error"] == "EventLoopMismatchError"
        assert "lifespan" in body["text"]
        assert _no_leak_warnings() == []

    def test_a_client_made_in_the_apps_lifespan_works_for_every_test_client(
        self, fake_thread: tuple[FakeClearTax, _LoopThread]
    ) -> None:
        fake, thread = fake_thread
        key = web.AppKey("pcsid", PcsidClient)

        def app_with_lifespan() -> web.Application:
            app = _app(lambda app: app[key])

            async def lifespan(app: web.Application) -> AsyncIterator[None]:
                async with _client(fake) as client:
                    app[key] = client
                    yield

            app.cleanup_ctx.append(lifespan)
            return app

        for _ in range(2):
            device, otp = _device(fake, thread)
            assert asyncio.run(_drive(app_with_lifespan(), device, otp)) == (
                200,
                {"status": "GENERATED"},
            )
        assert _no_leak_warnings() == []
