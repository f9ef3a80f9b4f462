"""Retry rules over loopback: safe GETs retry transient failures; OTP-carrying POSTs do not.

Every test counts the requests the server actually received. Backoff delays are a millisecond
or two (``quick_retry``), so nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import itertools
import random
import select
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from _scripted import TOKEN, VAT, ScriptedServer, quick_retry, reply, sleep_then
from conftest import ClientFactory

from pcsid_async import (
    ActivityState,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InternalServerError,
    PcsidClient,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
)
from pcsid_async.testing import FakeClearTax

ATTEMPTS = 3


async def call(client: PcsidClient, fake: FakeClearTax, endpoint: str) -> Any:
    """Make one call of ``endpoint`` ("renew", "generate" or "status") with fresh inputs."""
    if endpoint == "status":
        return await client.get_status(fake.create_activity())
    if endpoint == "renew":
        return await client.renew(fake.add_device(), fake.issue_otp())
    return await client.generate_csid(fake.add_device(has_pcsid=False), fake.issue_otp())


def request_counter() -> tuple[aiohttp.TraceConfig, list[str]]:
    """A trace config counting the requests the client started (even those never sent)."""
    started: list[str] = []

    async def on_start(session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.method)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_start)
    return tracing, started


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def unanswered_listener() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect hangs, nothing is ever written."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port: int = server.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        probe = stack.enter_context(socket.socket())
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", port))
        _, writable, _ = select.select([], [probe], [], 0.05)
        if writable:
            pytest.skip("this kernel completes connections past a full accept queue")
        yield port


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    async with FakeClearTax(token=TOKEN, vats=[VAT]) as server:
        yield server


@pytest.fixture
def client(fake: FakeClearTax, make_client: ClientFactory) -> PcsidClient:
    return make_client(fake.url, retry=quick_retry(max_attempts=ATTEMPTS), timeout=0.3)


POSTS = ["renew", "generate"]


class TestSafeGetIsRetried:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_transient_5xx_is_retried_until_it_succeeds(
        self, fake: FakeClearTax, client: PcsidClient, status: int
    ) -> None:
        fake.inject("status", "server_error", status=status, times=2, retry_after=0.001)
        result = await call(client, fake, "status")
        assert result.state is ActivityState.SUCCEEDED
        assert fake.count("status") == 3

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_transient_5xx_is_retried_max_attempts_times(
        self, fake: FakeClearTax, client: PcsidClient, status: int
    ) -> None:
        fake.inject("status", "server_error", status=status, times=99, retry_after=0.001)
        with pytest.raises(InternalServerError):
            await call(client, fake, "status")
        assert fake.count("status") == ATTEMPTS

    @pytest.mark.parametrize("status", [501, 505])
    async def test_non_transient_5xx_is_not_retried(
        self, fake: FakeClearTax, client: PcsidClient, status: int
    ) -> None:
        fake.inject("status", "http", status=status, times=99)
        with pytest.raises(InternalServerError):
            await call(client, fake, "status")
        assert fake.count("status") == 1

    async def test_the_failed_activity_500_is_an_answer_not_retried(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(failing_checks={"StandardTaxInvoice": "bad"})
        status = await client.get_status(activity)
        assert status.state is ActivityState.FAILED
        assert fake.count("status") == 1

    async def test_429_is_retried(self, fake: FakeClearTax, client: PcsidClient) -> None:
        fake.inject("status", "rate_limit", times=2, retry_after=0.001)
        await call(client, fake, "status")
        assert fake.count("status") == 3

    async def test_timeout_is_retried(self, fake: FakeClearTax, client: PcsidClient) -> None:
        fake.inject("status", "slow", times=2, delay=1.0)
        await call(client, fake, "status")
        assert fake.count("status") == 3

    async def test_timeout_every_time_raises_after_max_attempts(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("status", "slow", times=99, delay=1.0)
        with pytest.raises(APITimeoutError) as caught:
            await call(client, fake, "status")
        assert caught.value.may_have_reached_server
        assert fake.count("status") == ATTEMPTS

    async def test_dropped_connection_is_retried(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        """aiohttp re-sends a GET once on a dropped connection, inside each of our attempts."""
        fake.inject("status", "drop_after", times=99)
        with pytest.raises(APIConnectionError) as caught:
            await call(client, fake, "status")
        assert type(caught.value) is APIConnectionError
        assert caught.value.may_have_reached_server
        assert fake.count("status") == 2 * ATTEMPTS

    async def test_refused_connection_is_retried(self, make_client: ClientFactory) -> None:
        tracing, started = request_counter()
        client = make_client(
            f"http://127.0.0.1:{closed_port()}/x",
            retry=quick_retry(max_attempts=ATTEMPTS),
            trace_configs=[tracing],
        )
        with pytest.raises(APIConnectionError) as caught:
            await client.get_status("a1")
        assert not caught.value.may_have_reached_server
        assert started == ["GET"] * ATTEMPTS


class TestSingleUsePostIsNotRetried:
    """A POST carries a single-use OTP: retried only if it provably never reached the server."""

    @pytest.mark.parametrize("endpoint", POSTS)
    async def test_refused_connection_is_retried_max_attempts_times(
        self, make_client: ClientFactory, endpoint: str
    ) -> None:
        tracing, started = request_counter()
        client = make_client(
            f"http://127.0.0.1:{closed_port()}/x",
            retry=quick_retry(max_attempts=ATTEMPTS),
            trace_configs=[tracing],
        )
        method = client.renew if endpoint == "renew" else client.generate_csid
        with pytest.raises(APIConnectionError) as caught:
            await method("device", "123456")
        assert type(caught.value) is APIConnectionError
        assert caught.value.may_have_reached_server is False
        assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
        assert started == ["POST"] * ATTEMPTS

    async def test_timeout_before_the_request_was_written_is_retried(
        self, make_client: ClientFactory
    ) -> None:
        """Same TimeoutError as after sending, but aiohttp's tracing saw nothing written."""
        tracing, started = request_counter()
        with unanswered_listener() as port:
            client = make_client(
                f"http://127.0.0.1:{port}/x",
                retry=quick_retry(max_attempts=ATTEMPTS),
                timeout=0.05,
                trace_configs=[tracing],
            )
            with pytest.raises(APITimeoutError) as caught:
                await client.renew("device", "123456")
        assert caught.value.may_have_reached_server is False
        assert started == ["POST"] * ATTEMPTS

    @pytest.mark.parametrize("endpoint", POSTS)
    async def test_timeout_after_sending_raises_at_once(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str
    ) -> None:
        fake.inject(endpoint, "slow", times=99, delay=1.0)
        with pytest.raises(APITimeoutError) as caught:
            await call(client, fake, endpoint)
        assert caught.value.may_have_reached_server is True
        assert fake.count(endpoint) == 1
        assert sum(map(len, fake.ledger.values())) == 1  # the server did spend the OTP
        # aiohttp 3.14 reports a ClientTimeout expiry as a bare TimeoutError (on Python 3.10,
        # asyncio.TimeoutError, which is only an alias of the builtin from 3.11 on).
        assert type(caught.value.__cause__) in (TimeoutError, asyncio.TimeoutError)

    @pytest.mark.parametrize("endpoint", POSTS)
    @pytest.mark.parametrize("fault", ["drop_after", "drop_before"])
    async def test_dropped_connection_after_sending_raises_at_once(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str, fault: str
    ) -> None:
        """Whether or not the server processed it, the client cannot know: no retry."""
        fake.inject(endpoint, fault, times=99)
        with pytest.raises(APIConnectionError) as caught:
            await call(client, fake, endpoint)
        assert type(caught.value) is APIConnectionError
        assert caught.value.may_have_reached_server is True
        assert fake.count(endpoint) == 1
        assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)

    @pytest.mark.parametrize("endpoint", POSTS)
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_5xx_raises_at_once(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str, status: int
    ) -> None:
        fake.inject(endpoint, "server_error", status=status, times=99, retry_after=0.001)
        with pytest.raises(InternalServerError) as caught:
            await call(client, fake, endpoint)
        assert caught.value.status_code == status
        assert fake.count(endpoint) == 1

    @pytest.mark.parametrize("endpoint", POSTS)
    async def test_429_is_retried_because_the_server_did_not_process_it(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str
    ) -> None:
        fake.inject(endpoint, "rate_limit", times=2, retry_after=0.001)
        result = await call(client, fake, endpoint)
        assert result.ok
        assert fake.count(endpoint) == 3
        assert sum(map(len, fake.ledger.values())) == 1

    @pytest.mark.parametrize("endpoint", POSTS)
    async def test_429_every_time_raises_rate_limit_error_after_max_attempts(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str
    ) -> None:
        fake.inject(endpoint, "rate_limit", times=99, retry_after=0.001)
        with pytest.raises(RateLimitError):
            await call(client, fake, endpoint)
        assert fake.count(endpoint) == ATTEMPTS


class TestBorrowedSession:
    """A borrowed session carries no trace of ours: the client assumes the worst."""

    async def test_refused_post_is_still_retried(self) -> None:
        tracing, started = request_counter()
        async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
            client = PcsidClient(
                TOKEN,
                VAT,
                base_url=f"http://127.0.0.1:{closed_port()}/x",
                session=session,
                retry=quick_retry(max_attempts=ATTEMPTS),
            )
            with pytest.raises(APIConnectionError) as caught:
                await client.renew("device", "123456")
        assert caught.value.may_have_reached_server is False
        assert started == ["POST"] * ATTEMPTS

    async def test_dropped_post_may_have_reached_the_server(self, fake: FakeClearTax) -> None:
        fake.inject("renew", "drop_before", times=99)
        async with aiohttp.ClientSession() as session:
            client = PcsidClient(TOKEN, VAT, base_url=fake.url, session=session)
            with pytest.raises(APIConnectionError) as caught:
                await call(client, fake, "renew")
        assert caught.value.may_have_reached_server is True
        assert fake.count("renew") == 1


class TestRetryUnsafeOptIn:
    @pytest.fixture
    def client(self, fake: FakeClearTax, make_client: ClientFactory) -> PcsidClient:
        policy = quick_retry(max_attempts=ATTEMPTS, retry_unsafe=True)
        return make_client(fake.url, retry=policy, timeout=0.3)

    @pytest.mark.parametrize("endpoint", POSTS)
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_5xx_post_is_retried(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str, status: int
    ) -> None:
        fake.inject(endpoint, "server_error", status=status, times=99, retry_after=0.001)
        with pytest.raises(InternalServerError):
            await call(client, fake, endpoint)
        assert fake.count(endpoint) == ATTEMPTS

    async def test_timed_out_post_is_retried(self, fake: FakeClearTax, client: PcsidClient) -> None:
        fake.inject("renew", "slow", times=99, delay=1.0)
        with pytest.raises(APITimeoutError):
            await call(client, fake, "renew")
        assert fake.count("renew") == ATTEMPTS

    async def test_dropped_post_is_retried(self, fake: FakeClearTax, client: PcsidClient) -> None:
        fake.inject("renew", "drop_before", times=1)
        result = await call(client, fake, "renew")
        assert result.ok
        assert fake.count("renew") == 2


class TestNeverRetried:
    @pytest.mark.parametrize("endpoint", ["status", *POSTS])
    @pytest.mark.parametrize("status", [400, 401, 403, 404])
    async def test_client_errors_are_never_retried(
        self, fake: FakeClearTax, make_client: ClientFactory, endpoint: str, status: int
    ) -> None:
        policy = quick_retry(max_attempts=ATTEMPTS, retry_unsafe=True)
        client = make_client(fake.url, retry=policy)
        fake.inject(endpoint, "http", status=status, times=99)
        with pytest.raises(APIStatusError) as caught:
            await call(client, fake, endpoint)
        assert caught.value.status_code == status
        assert fake.count(endpoint) == 1

    async def test_undecodable_answer_is_not_retried(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("status", "malformed", times=99, body="{")
        with pytest.raises(ResponseDecodeError):
            await call(client, fake, "status")
        assert fake.count("status") == 1


class TestRetryAfter:
    @pytest.mark.parametrize("endpoint", ["status", "renew"])
    async def test_the_retry_waits_at_least_retry_after(
        self, fake: FakeClearTax, client: PcsidClient, endpoint: str
    ) -> None:
        fake.inject(endpoint, "rate_limit", retry_after=0.2)
        await call(client, fake, endpoint)
        first, second = fake.request_times(endpoint)
        assert second - first >= 0.19

    async def test_retry_after_pauses_every_call_of_the_client(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        rate_limited = asyncio.Event()

        async def on_end(session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
            if params.response.status == 429:
                rate_limited.set()

        tracing = aiohttp.TraceConfig()
        tracing.on_request_end.append(on_end)
        client = make_client(fake.url, retry=quick_retry(), trace_configs=[tracing])
        fake.inject("renew", "rate_limit", retry_after=0.3)
        renewal = asyncio.create_task(call(client, fake, "renew"))
        await rate_limited.wait()
        await call(client, fake, "status")  # another call, made during the renewal's pause
        await renewal
        (status_at,) = fake.request_times("status")
        assert status_at - fake.request_times("renew")[0] >= 0.29

    async def test_retry_after_on_a_503_is_honoured(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("status", "server_error", status=503, retry_after=0.2)
        await call(client, fake, "status")
        first, second = fake.request_times("status")
        assert second - first >= 0.19

    @pytest.mark.parametrize("endpoint", ["status", "renew"])
    async def test_retry_after_beyond_the_cap_raises_rate_limit_error_at_once(
        self, fake: FakeClearTax, make_client: ClientFactory, endpoint: str
    ) -> None:
        client = make_client(fake.url, retry=quick_retry(max_retry_after=1.0))
        fake.inject(endpoint, "rate_limit", retry_after=30)
        with pytest.raises(RateLimitError) as caught:
            # Waiting out the 30 s would blow this bound: the error must come at once.
            await asyncio.wait_for(call(client, fake, endpoint), timeout=5)
        assert caught.value.retry_after == 30.0
        assert fake.count(endpoint) == 1

    async def test_retry_after_as_an_http_date_is_understood(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        """An HTTP date an hour ahead is past the cap: RateLimitError at once, no retry."""
        an_hour_ahead = email.utils.format_datetime(
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), usegmt=True
        )
        fake.inject("status", "rate_limit", retry_after=an_hour_ahead)
        with pytest.raises(RateLimitError) as caught:
            await asyncio.wait_for(call(client, fake, "status"), timeout=5)
        assert caught.value.retry_after is not None
        assert 3500 < caught.value.retry_after <= 3600
        assert fake.count("status") == 1

    async def test_a_retry_never_comes_before_retry_after_even_near_max_elapsed(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        """Rather than retry early, give up when Retry-After outlasts max_elapsed."""
        client = make_client(fake.url, retry=quick_retry(max_elapsed=0.1))
        fake.inject("status", "server_error", status=502, retry_after=0.3, times=99)
        with pytest.raises(InternalServerError) as caught:
            await call(client, fake, "status")
        assert caught.value.retry_after == 0.3
        assert fake.count("status") == 1


class TestBounds:
    @pytest.mark.parametrize("attempts", [1, 2, 5])
    async def test_max_attempts_bounds_the_tries(
        self, fake: FakeClearTax, make_client: ClientFactory, attempts: int
    ) -> None:
        client = make_client(fake.url, retry=quick_retry(max_attempts=attempts))
        fake.inject("status", "server_error", status=503, times=99, retry_after=0.001)
        with pytest.raises(InternalServerError):
            await call(client, fake, "status")
        assert fake.count("status") == attempts

    async def test_no_retry_starts_after_max_elapsed(self, make_client: ClientFactory) -> None:
        max_elapsed = 0.15
        async with ScriptedServer(sleep_then(0.1, reply(503))) as server:
            policy = quick_retry(max_attempts=50, max_elapsed=max_elapsed)
            client = make_client(server.url, retry=policy)
            with pytest.raises(InternalServerError):
                await client.get_status("a1")
        arrivals = [seen.at - server.requests[0].at for seen in server.requests]
        assert len(arrivals) >= 2  # it did retry inside the bound
        # 30 ms of slack for loopback latency between starting a try and its arrival.
        assert max(arrivals) <= max_elapsed + 0.03, arrivals

    async def test_backoff_doubles_with_equal_jitter(
        self, fake: FakeClearTax, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drawn: list[tuple[float, float]] = []
        real_uniform = random.uniform

        def spy(low: float, high: float) -> float:
            drawn.append((low, high))
            return real_uniform(low, high)

        monkeypatch.setattr(random, "uniform", spy)
        policy = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.03)
        client = make_client(fake.url, retry=policy)
        fake.inject("status", "server_error", status=502, times=99)
        with pytest.raises(InternalServerError):
            await call(client, fake, "status")
        assert drawn == [(0.005, 0.01), (0.01, 0.02), (0.015, 0.03)]
        times = fake.request_times("status")
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= low * 0.9 for gap, (low, _) in zip(gaps, drawn, strict=True)), gaps


class TestCallerCancellation:
    @pytest.mark.skipif(
        sys.version_info < (3, 11),
        reason="needs asyncio.timeout; on 3.10 aiohttp's timer can absorb a coinciding cancel",
    )
    async def test_a_cancel_coinciding_with_the_request_timeout_is_not_retried_away(
        self, fake: FakeClearTax
    ) -> None:
        """wait_for(..., t) around a call whose own timeout is also t still times out at t."""
        activity = fake.create_activity(polls=1)
        fake.inject("status", "slow", delay=2.0, times=10)
        async with PcsidClient(
            fake.token, fake.vat, base_url=fake.url, timeout=0.1, retry=quick_retry()
        ) as client:
            started = time.monotonic()
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await asyncio.wait_for(client.get_status(activity), 0.1)
            assert time.monotonic() - started < 1.0
        assert fake.count("status") == 1
