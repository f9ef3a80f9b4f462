"""with_options views and per-call timeouts, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from _scripted import ScriptedServer, quick_retry, reply, sleep_then
from aiohttp import web
from conftest import ClientFactory

from pcsid_async import (
    ActivityState,
    APITimeoutError,
    ClientClosedError,
    InternalServerError,
    InvalidArgumentError,
    PcsidClient,
    RetryPolicy,
)

ACTIVITY = "628f37b61ed71a6638b848e4"
SUCCEEDED = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "SUCCEEDED"}
FAILED = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "FAILED"}
GENERATED = {"Status": "GENERATED", "DeviceId": "d-1", "PcsidGenerationActivityId": ACTIVITY}


def peers() -> tuple[list[Any], Any]:
    """A step answering SUCCEEDED that records each request's client address (its connection)."""
    seen: list[Any] = []

    async def step(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        seen.append(request.transport.get_extra_info("peername"))
        return web.json_response(SUCCEEDED)

    return seen, step


class TestViews:
    async def test_a_view_shares_the_parents_connection(self, make_client: ClientFactory) -> None:
        seen, step = peers()
        async with ScriptedServer(step) as server:
            client = make_client(server.url)
            await client.get_status(ACTIVITY)
            await client.with_options(timeout=9.0).get_status(ACTIVITY)
        assert len(seen) == 2
        assert seen[0] == seen[1]  # the same pooled TCP connection

    async def test_the_views_retry_policy_applies_only_to_it(
        self, make_client: ClientFactory
    ) -> None:
        async with ScriptedServer(reply(503)) as server:
            client = make_client(server.url, retry=quick_retry(max_attempts=3))
            with pytest.raises(InternalServerError):
                await client.with_options(retry=RetryPolicy(max_attempts=1)).get_status(ACTIVITY)
            assert len(server.requests) == 1
            with pytest.raises(InternalServerError):
                await client.get_status(ACTIVITY)
            assert len(server.requests) == 4

    async def test_the_views_timeout_applies_only_to_it(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(sleep_then(0.3, reply(200, json=SUCCEEDED))) as server:
            client = make_client(server.url, retry=quick_retry(max_attempts=1))
            with pytest.raises(APITimeoutError):
                await client.with_options(timeout=0.05).get_status(ACTIVITY)
            assert (await client.get_status(ACTIVITY)).state is ActivityState.SUCCEEDED

    async def test_closing_a_view_leaves_the_parent_open(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(reply(200, json=SUCCEEDED)) as server:
            client = make_client(server.url)
            async with client.with_options(timeout=3.0) as view:
                assert isinstance(view, PcsidClient)
                await view.get_status(ACTIVITY)
            await view.close()
            assert not view.closed
            assert not client.closed
            await client.get_status(ACTIVITY)
            await client.with_options().get_status(ACTIVITY)  # a view made after use, too

    async def test_closing_the_parent_closes_its_views(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(reply(200, json=SUCCEEDED)) as server:
            client = make_client(server.url)
            view = client.with_options(timeout=3.0).with_options(retry=quick_retry())
            await view.get_status(ACTIVITY)
            await client.close()
            assert view.closed
            with pytest.raises(ClientClosedError):
                await view.get_status(ACTIVITY)

    def test_view_options_are_checked(self) -> None:
        client = PcsidClient("tok-123456", "300000000000003")
        with pytest.raises(InvalidArgumentError):
            client.with_options(timeout=0)
        with pytest.raises(InvalidArgumentError):
            client.with_options(retry="fast")  # type: ignore[arg-type]
        view = client.with_options(timeout=None, retry=RetryPolicy(max_attempts=2))
        assert view.retry.max_attempts == 2
        assert client.retry.max_attempts == 4


class TestPerCallTimeout:
    @pytest.mark.parametrize("call", ["renew", "generate_csid", "get_status"])
    async def test_a_per_call_timeout_overrides_the_clients(
        self, make_client: ClientFactory, call: str
    ) -> None:
        answer = SUCCEEDED if call == "get_status" else GENERATED
        args = (ACTIVITY,) if call == "get_status" else ("d-1", "123456")
        async with ScriptedServer(sleep_then(0.2, reply(200, json=answer))) as server:
            short = make_client(server.url, timeout=0.05, retry=quick_retry(max_attempts=1))
            await getattr(short, call)(*args, timeout=5.0)  # longer than the client's: answered
            with pytest.raises(APITimeoutError):
                await getattr(make_client(server.url), call)(*args, timeout=0.05)

    async def test_a_per_call_timeout_must_be_positive(self, make_client: ClientFactory) -> None:
        client = make_client("http://127.0.0.1:9")
        with pytest.raises(InvalidArgumentError):
            await client.get_status(ACTIVITY, timeout=-1)

    async def test_await_activity_request_timeout_bounds_each_poll(
        self, make_client: ClientFactory
    ) -> None:
        """A slow poll is cut at request_timeout and ridden out; the next poll answers."""
        slow_failed = sleep_then(0.5, reply(500, json=FAILED))
        async with ScriptedServer(slow_failed, reply(200, json=SUCCEEDED)) as server:
            client = make_client(server.url, timeout=5.0)
            status = await client.await_activity(
                ACTIVITY, timeout=5.0, interval=0.01, max_interval=0.02, request_timeout=0.05
            )
        assert status.state is ActivityState.SUCCEEDED
        assert len(server.requests) == 2

    async def test_request_timeout_must_be_positive(self, make_client: ClientFactory) -> None:
        client = make_client("http://127.0.0.1:9")
        with pytest.raises(InvalidArgumentError, match="request_timeout"):
            await client.await_activity(ACTIVITY, request_timeout=0)
