"""await_activity() and watch(): schedule, deadline, transient vs permanent, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcsid_async import (
    ActivityFailedError,
    ActivityState,
    ActivityStatus,
    ActivityTimeoutError,
    AuthenticationError,
    ComplianceCheck,
    GenerationStatus,
    InternalServerError,
    InvalidArgumentError,
    PcsidClient,
    ResponseDecodeError,
    RetryPolicy,
)
from pcsid_async.testing import FakeClearTax

FAST_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.005)
TOKEN = "poll-token-3f9a1c"


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    async with FakeClearTax(token=TOKEN) as server:
        yield server


@pytest.fixture
async def client(fake: FakeClearTax) -> AsyncIterator[PcsidClient]:
    async with PcsidClient(TOKEN, fake.vat, base_url=fake.url, retry=FAST_RETRY) as c:
        yield c


def _is_server_task(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "pcsid_async/testing" in filename


async def _tasks_left() -> set[asyncio.Task[object]]:
    """Client-side tasks other than this one.

    The fake server shares this loop; its handlers (a deliberately slow answer, say) are
    not the client's business, so they are left out.
    """
    current = asyncio.current_task()
    await asyncio.sleep(0)
    return {t for t in asyncio.all_tasks() if t is not current and not _is_server_task(t)}


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


class TestReachesTheFinalStatus:
    async def test_success_after_n_polls_makes_exactly_n_requests(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=4)

        final = await client.await_activity(activity, interval=0.001, max_interval=0.002)

        assert final.state is ActivityState.SUCCEEDED
        assert final.succeeded
        assert final.pcsid_generated is GenerationStatus.GENERATED
        assert final.activity_id == activity
        assert len(final.checks) == 6
        assert all(outcome.passed for outcome in final.checks.values())
        assert fake.count("status", activity_id=activity) == 4

    async def test_terminal_on_first_poll_makes_one_request(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=1)

        await client.await_activity(activity, interval=0.001)

        assert fake.count("status", activity_id=activity) == 1

    async def test_failed_activity_is_returned_with_per_check_messages(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(
            polls=2,
            failing_checks={"SimplifiedTaxInvoice": "Invalid QR code, Missing hash"},
        )

        final = await client.await_activity(activity, interval=0.001)

        assert final.state is ActivityState.FAILED
        assert not final.succeeded
        assert final.pcsid_generated is GenerationStatus.FAILED
        assert final.failed_checks == (ComplianceCheck.SIMPLIFIED_TAX_INVOICE,)
        outcome = final.checks[ComplianceCheck.SIMPLIFIED_TAX_INVOICE]
        assert outcome.messages == ("Invalid QR code", "Missing hash")
        assert final.failure_count == 1
        assert final.success_count == 5
        # The provider reports FAILED as HTTP 500 with an activity body.
        assert [r.status for r in fake.requests if r.activity_id == activity][-1] == 500

    async def test_raise_on_failure_raises_with_the_final_status(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=1, failing_checks={"StandardTaxInvoice": "bad"})

        with pytest.raises(ActivityFailedError) as caught:
            await client.await_activity(activity, interval=0.001, raise_on_failure=True)

        assert caught.value.status.state is ActivityState.FAILED
        assert "StandardTaxInvoice" in str(caught.value)

    async def test_raise_on_failure_returns_a_success(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=1)

        final = await client.await_activity(activity, interval=0.001, raise_on_failure=True)

        assert final.succeeded

    async def test_three_check_activity_is_complete_without_six_checks(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        checks = ["SimplifiedTaxInvoice", "SimplifiedTaxInvoiceCredit", "SimplifiedTaxInvoiceDebit"]
        activity = fake.create_activity(polls=1, checks=checks)

        final = await client.await_activity(activity, interval=0.001)

        assert final.total_count == 3
        assert {c.value for c in final.checks} == set(checks)
        assert final.succeeded


class TestTransientAndPermanentFailures:
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_transient_5xx_mid_poll_is_ridden_out(
        self, fake: FakeClearTax, client: PcsidClient, status: int
    ) -> None:
        activity = fake.create_activity(polls=3)
        fake.inject("status", "server_error", status=status, times=2, retry_after="0")

        final = await client.await_activity(activity, interval=0.001)

        assert final.succeeded
        assert fake.count("status", activity_id=activity) == 5

    async def test_dropped_connection_mid_poll_is_ridden_out(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=2)
        fake.inject("status", "drop_before", times=3)

        final = await client.await_activity(activity, interval=0.001)

        assert final.succeeded

    async def test_transient_errors_are_handled_by_the_poller_not_request_retries(
        self, fake: FakeClearTax
    ) -> None:
        """With request retries off entirely, the poller still rides out a 503."""
        activity = fake.create_activity(polls=1)
        fake.inject("status", "server_error", status=503, times=3, retry_after="0")
        async with PcsidClient(
            TOKEN, fake.vat, base_url=fake.url, retry=RetryPolicy.no_retries()
        ) as client:
            final = await client.await_activity(activity, interval=0.001)

        assert final.succeeded
        assert fake.count("status", activity_id=activity) == 4

    async def test_401_mid_poll_raises_at_once(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=50)

        def revoke_token(status: ActivityStatus) -> None:
            fake.inject("status", "http", status=401, times=100)

        with pytest.raises(AuthenticationError):
            await client.await_activity(activity, interval=0.001, on_update=revoke_token)

        assert fake.count("status", activity_id=activity) == 2

    async def test_undecodable_status_raises_at_once(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=5)
        fake.inject("status", "malformed", body={"Status": "EXPLODED"})

        with pytest.raises(ResponseDecodeError, match="Status"):
            await client.await_activity(activity, interval=0.001)

        assert fake.count("status", activity_id=activity) == 1

    async def test_unknown_activity_raises_bad_request(self, client: PcsidClient) -> None:
        from pcsid_async import BadRequestError

        with pytest.raises(BadRequestError):
            await client.await_activity("0123456789abcdef01234567", interval=0.001)


class TestDeadline:
    async def test_deadline_raises_with_the_last_status(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=10_000)
        started = time.monotonic()

        with pytest.raises(ActivityTimeoutError) as caught:
            await client.await_activity(activity, timeout=0.08, interval=0.005, max_interval=0.01)

        waited = time.monotonic() - started
        error = caught.value
        assert error.activity_id == activity
        assert error.last_status is not None
        assert error.last_status.state is ActivityState.IN_PROGRESS
        assert "may still finish" in str(error)
        assert waited >= 0.08  # never gives up early
        assert fake.count("status", activity_id=activity) >= 2

    async def test_deadline_without_any_successful_poll_has_no_last_status(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=1)
        fake.inject("status", "server_error", status=503, times=10_000, retry_after="0")

        with pytest.raises(ActivityTimeoutError) as caught:
            await client.await_activity(activity, timeout=0.05, interval=0.005)

        assert caught.value.last_status is None
        assert isinstance(caught.value.__cause__, InternalServerError)

    async def test_a_sleep_crossing_the_deadline_is_cut_and_a_last_poll_made_there(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        """The second poll happens at the deadline, not after a full interval."""
        activity = fake.create_activity(delay=0.05)

        final = await client.await_activity(activity, timeout=0.1, interval=5.0, max_interval=5.0)

        assert final.succeeded
        times = fake.request_times("status")
        assert len(times) == 2
        assert 0.09 <= times[1] - times[0] < 1.0

    async def test_resuming_after_a_timeout_reaches_the_final_status(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=6)
        with pytest.raises(ActivityTimeoutError):
            await client.await_activity(activity, timeout=0.02, interval=0.05)

        final = await client.await_activity(activity, interval=0.001)

        assert final.succeeded

    async def test_none_timeout_means_no_deadline(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=3)

        final = await client.await_activity(activity, timeout=None, interval=0.001)

        assert final.succeeded


class TestRetryAfter:
    async def test_retry_after_on_a_429_delays_the_next_poll(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=2)
        fake.inject("status", "rate_limit", retry_after=0.2)

        final = await client.await_activity(activity, interval=0.001)

        assert final.succeeded
        gaps = _gaps(fake.request_times("status"))
        assert gaps[0] >= 0.18

    async def test_retry_after_on_a_200_means_not_before(self) -> None:
        """An IN_PROGRESS answer with Retry-After holds the next poll back."""
        times: list[float] = []

        async def status(request: web.Request) -> web.Response:
            times.append(time.monotonic())
            state = "IN_PROGRESS" if len(times) < 2 else "SUCCEEDED"
            body = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": state}
            return web.json_response(body, headers={"Retry-After": "0.15"})

        app = web.Application()
        app.router.add_get("/onboarding/{activity}/pcsid-status", status)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with PcsidClient(
                TOKEN, "300000000000003", base_url=f"http://127.0.0.1:{port}"
            ) as c:
                final = await c.await_activity("abc123", interval=0.001)
        finally:
            await runner.cleanup()

        assert final.state is ActivityState.SUCCEEDED
        assert times[1] - times[0] >= 0.14


class TestChangeNotification:
    async def test_on_update_sees_each_change_once(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=5)
        seen: list[ActivityState] = []

        await client.await_activity(
            activity, interval=0.001, on_update=lambda s: seen.append(s.state)
        )

        assert fake.count("status", activity_id=activity) == 5
        assert seen == [ActivityState.IN_PROGRESS, ActivityState.SUCCEEDED]

    async def test_async_on_update_is_awaited(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=2)
        seen: list[ActivityState] = []

        async def record(status: ActivityStatus) -> None:
            await asyncio.sleep(0)
            seen.append(status.state)

        await client.await_activity(activity, interval=0.001, on_update=record)

        assert seen == [ActivityState.IN_PROGRESS, ActivityState.SUCCEEDED]

    async def test_watch_yields_each_distinct_status_through_the_terminal_one(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=4)

        states = [s.state async for s in client.watch(activity, interval=0.001)]

        assert states == [ActivityState.IN_PROGRESS, ActivityState.SUCCEEDED]
        assert fake.count("status", activity_id=activity) == 4

    async def test_breaking_out_of_watch_stops_polling(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=100)
        watcher = client.watch(activity, interval=0.001)
        async for _ in watcher:
            break
        await watcher.aclose()  # type: ignore[attr-defined]
        count = fake.count("status", activity_id=activity)

        await asyncio.sleep(0.02)

        assert fake.count("status", activity_id=activity) == count == 1


class TestCancellation:
    async def test_cancelling_leaves_no_task_or_request_behind(self, fake: FakeClearTax) -> None:
        activity = fake.create_activity(polls=100_000)
        async with PcsidClient(TOKEN, fake.vat, base_url=fake.url, retry=FAST_RETRY) as client:
            task = asyncio.create_task(client.await_activity(activity, interval=0.002))
            await asyncio.sleep(0.03)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # A poll written just before the cancel may still be landing on the server.
            await asyncio.sleep(0.01)
            polls = fake.count("status", activity_id=activity)
            await asyncio.sleep(0.03)
            assert fake.count("status", activity_id=activity) == polls
        assert await _tasks_left() == set()

    async def test_cancelling_during_a_slow_poll_cancels_the_request(
        self, fake: FakeClearTax
    ) -> None:
        activity = fake.create_activity(polls=2)
        fake.inject("status", "slow", delay=5.0)
        async with PcsidClient(TOKEN, fake.vat, base_url=fake.url, retry=FAST_RETRY) as client:
            task = asyncio.create_task(client.await_activity(activity, interval=0.001))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 1.0
        assert await _tasks_left() == set()


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"interval": 0},
            {"interval": -1.0},
            {"max_interval": 0.5, "interval": 1.0},
            {"timeout": 0},
            {"timeout": -5.0},
            {"timeout": float("nan")},
            {"interval": float("inf")},
        ],
    )
    async def test_bad_schedule_arguments_are_refused_before_any_request(
        self, fake: FakeClearTax, client: PcsidClient, kwargs: dict[str, float]
    ) -> None:
        with pytest.raises(InvalidArgumentError):
            await client.await_activity("abc", **kwargs)
        assert fake.count("status") == 0

    @pytest.mark.parametrize("activity_id", ["", "../x", "a/b", "a?b", "a b", "a%2F"])
    async def test_bad_activity_ids_are_refused_before_any_request(
        self, fake: FakeClearTax, client: PcsidClient, activity_id: str
    ) -> None:
        with pytest.raises(ValueError, match="activity_id"):
            await client.await_activity(activity_id)
        assert fake.count("status") == 0


class TestLogging:
    async def test_each_poll_is_logged_without_secrets(
        self, fake: FakeClearTax, client: PcsidClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        activity = fake.create_activity(polls=3)
        caplog.set_level(logging.DEBUG, logger="pcsid_async")

        await client.await_activity(activity, interval=0.001)

        polls = [r for r in caplog.records if "next poll in" in r.getMessage()]
        assert len(polls) == 2
        assert all(activity in r.getMessage() for r in polls)
        assert all("IN_PROGRESS" in r.getMessage() for r in polls)
        assert not any(TOKEN in r.getMessage() for r in caplog.records)


def _max_polls(terminal_at: float, interval: float, max_interval: float) -> int:
    """Polls needed under the shortest jittered schedule (every delay d/2), plus one."""
    elapsed, polls, k = 0.0, 1, 0
    while elapsed < terminal_at:
        elapsed += min(max_interval, interval * 1.5**k) / 2
        polls += 1
        k += 1
    return polls + 1


class TestScheduleProperty:
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(terminal_at=st.floats(min_value=0.0, max_value=0.08))
    async def test_poll_count_and_spacing_follow_the_schedule(self, terminal_at: float) -> None:
        interval, max_interval = 0.004, 0.016
        async with FakeClearTax(token=TOKEN) as fake:
            activity = (
                fake.create_activity(delay=terminal_at)
                if terminal_at
                else (fake.create_activity(polls=1))
            )
            async with PcsidClient(TOKEN, fake.vat, base_url=fake.url) as client:
                await client.await_activity(
                    activity, timeout=10.0, interval=interval, max_interval=max_interval
                )
            times = fake.request_times("status")

        assert len(times) <= _max_polls(terminal_at, interval, max_interval)
        assert all(gap >= interval / 2 * 0.9 for gap in _gaps(times))
