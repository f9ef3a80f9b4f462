"""renew_many(): one outcome per request, bounded concurrency, pauses, breakers, clean exits."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pcsid_async import (
    ActivityFailedError,
    ActivityState,
    ActivityTimeoutError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    OtpExpiredError,
    OutcomeState,
    PcsidClient,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    RenewalOutcome,
    RenewalRequest,
    RenewalResult,
    ResponseDecodeError,
    RetryPolicy,
)
from pcsid_async._transport import CallStats
from pcsid_async.testing import EndpointFaults, FakeClearTax, FaultPlan

TOKEN = "batch-token-5d1e07"
DEFAULT_VAT = "300000000000003"
OTHER_VAT = "311111111111113"
FAST_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.005)
RENEWED, FAILED, UNKNOWN, SKIPPED = (
    OutcomeState.RENEWED,
    OutcomeState.FAILED,
    OutcomeState.UNKNOWN,
    OutcomeState.SKIPPED,
)
FAST_POLLS: dict[str, Any] = {"activity_interval": 0.001, "activity_max_interval": 0.002}


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    async with FakeClearTax(token=TOKEN, vats=(DEFAULT_VAT, OTHER_VAT)) as server:
        yield server


def make_client(fake: FakeClearTax, **kwargs: Any) -> PcsidClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return PcsidClient(kwargs.pop("token", TOKEN), fake.vat, base_url=fake.url, **kwargs)


@pytest.fixture
async def client(fake: FakeClearTax) -> AsyncIterator[PcsidClient]:
    async with make_client(fake) as c:
        yield c


def devices(fake: FakeClearTax, n: int, **kwargs: Any) -> list[tuple[str, str]]:
    ids = fake.add_devices(n, **kwargs)
    return list(zip(ids, fake.issue_otps(n, vat=kwargs.get("vat")), strict=True))


async def collect(outcomes: AsyncIterator[RenewalOutcome]) -> list[RenewalOutcome]:
    return [outcome async for outcome in outcomes]


async def drain(outcomes: AsyncIterator[RenewalOutcome], into: list[RenewalOutcome]) -> None:
    async for outcome in outcomes:
        into.append(outcome)


def by_device(outcomes: list[RenewalOutcome]) -> dict[str, RenewalOutcome]:
    result = {o.device_id: o for o in outcomes}
    assert len(result) == len(outcomes)
    return result


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "pcsid_async/testing" in filename


def client_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of this loop other than the test's own and the fake server's handlers."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not _is_server_task(t)}


async def settle() -> None:
    """Let aiohttp finish tasks it cancelled itself (a request writer, say)."""
    for _ in range(3):
        await asyncio.sleep(0)


class TestArgumentsAreCheckedWhenCalled:
    @pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "4"])
    def test_bad_concurrency_is_refused_before_iteration(
        self, client: PcsidClient, concurrency: Any
    ) -> None:
        with pytest.raises(InvalidArgumentError, match="concurrency"):
            client.renew_many([], concurrency=concurrency)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("activity_timeout", 0),
            ("activity_timeout", float("nan")),
            ("activity_interval", -1.0),
            ("activity_max_interval", 0.0),
        ],
    )
    def test_bad_activity_timing_is_refused(
        self, client: PcsidClient, name: str, value: float
    ) -> None:
        with pytest.raises(InvalidArgumentError, match=name):
            client.renew_many([], **{name: value})

    def test_max_interval_below_interval_is_refused(self, client: PcsidClient) -> None:
        with pytest.raises(InvalidArgumentError, match="activity_max_interval"):
            client.renew_many([], activity_interval=2.0, activity_max_interval=1.0)

    @pytest.mark.parametrize("requests", [42, "dev-1,123456", None])
    def test_non_iterable_requests_are_refused(self, client: PcsidClient, requests: Any) -> None:
        with pytest.raises(InvalidArgumentError, match="requests"):
            client.renew_many(requests)

    async def test_a_closed_client_refuses(self, fake: FakeClearTax) -> None:
        client = make_client(fake)
        await client.close()
        with pytest.raises(ClientClosedError):
            client.renew_many([])

    async def test_no_activity_deadline_is_allowed(self, client: PcsidClient) -> None:
        assert await collect(client.renew_many([], activity_timeout=None)) == []


class TestExactlyOneOutcomePerRequest:
    async def test_2000_devices_with_mixed_failures_get_2000_outcomes(self) -> None:
        plan = FaultPlan(
            renew=EndpointFaults(
                rate_limit=0.03,
                server_error=0.02,
                drop_before=0.005,
                drop_after=0.005,
                malformed=0.005,
            )
        )  # timeouts are left to their own test: here they would depend on the machine's speed
        async with FakeClearTax(token=TOKEN, faults=plan, retry_after=0.01, seed=11) as fake:
            requests: list[RenewalRequest | tuple[str, str]] = []
            requests += devices(fake, 1900)
            requests += devices(fake, 30, renew_error=("8001", "ZATCA says no"))
            requests += devices(fake, 30, has_pcsid=False)
            past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
            requests += [RenewalRequest(d, o, otp_expires_at=past) for d, o in devices(fake, 20)]
            requests += [(d, "   ") for d, _ in devices(fake, 10)]
            duplicates = list(requests[:10])
            requests += duplicates
            assert len(requests) == 2000

            async with make_client(fake) as client:
                outcomes = await collect(client.renew_many(requests, concurrency=32))

            ledger = fake.ledger
        assert len(outcomes) == 2000
        per_device = Counter(o.device_id for o in outcomes)
        assert sum(per_device.values()) == 2000
        assert len(per_device) == 1990
        assert all(per_device[r[0]] == 2 for r in duplicates)  # type: ignore[index]
        assert all(len(entries) <= 1 for entries in ledger.values())  # never renewed twice
        states = Counter(o.state for o in outcomes)
        assert states[SKIPPED] == 30  # 20 expired + 10 duplicates
        assert states[RENEWED] > 1700
        assert states[FAILED] >= 70  # 30 planted + 30 without PCSID + 10 blank OTPs + 5xx
        assert states[UNKNOWN] > 0
        for outcome in outcomes:
            processed = len(ledger.get(outcome.device_id, ()))
            if outcome.state is RENEWED:
                assert processed == 1
                assert outcome.error is None
            elif outcome.state is FAILED:
                assert processed == 0, outcome
                assert outcome.error is not None
            elif outcome.state is SKIPPED:
                assert outcome.attempts == 0
                assert outcome.error is not None
            else:
                assert isinstance(outcome.error, (APIConnectionError, ResponseDecodeError)) or (
                    isinstance(outcome.error, APIStatusError)
                    and outcome.error.status_code in (502, 504)
                )
                assert outcome.attempts >= 1

    async def test_tuples_requests_and_async_iterables_are_all_accepted(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        (d1, o1), (d2, o2), (d3, o3) = devices(fake, 3)

        async def source() -> AsyncIterator[RenewalRequest | tuple[str, str]]:
            yield (d1, o1)
            await asyncio.sleep(0.001)
            yield RenewalRequest(d2, o2)

        first = await collect(client.renew_many(source()))
        second = await collect(client.renew_many([RenewalRequest(d3, o3)]))
        assert {o.device_id for o in first} == {d1, d2}
        assert [o.device_id for o in second] == [d3]
        assert all(o.ok and o.attempts == 1 for o in first + second)
        assert all(isinstance(o.result, RenewalResult) for o in first + second)

    async def test_an_empty_source_yields_nothing(self, client: PcsidClient) -> None:
        assert await collect(client.renew_many(iter(()))) == []

    async def test_a_malformed_item_is_raised_after_the_devices_already_pulled(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 2)
        seen: list[RenewalOutcome] = []
        outcomes = client.renew_many([*pairs, ("only-one",), *devices(fake, 3)])
        with pytest.raises(InvalidArgumentError, match="RenewalRequest or a"):
            await drain(outcomes, seen)
        assert {o.device_id for o in seen} == {d for d, _ in pairs}
        assert all(o.ok for o in seen)

    async def test_an_exception_of_the_source_is_reraised_after_pulled_devices_finish(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 3)

        def source() -> Iterator[tuple[str, str]]:
            yield from pairs
            raise LookupError("the spreadsheet went away")

        seen: list[RenewalOutcome] = []
        with pytest.raises(LookupError, match="spreadsheet"):
            await drain(client.renew_many(source(), concurrency=2), seen)
        assert sorted(o.device_id for o in seen) == sorted(d for d, _ in pairs)

    async def test_an_exception_of_an_async_source_is_reraised_after_pulled_devices_finish(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 3)

        async def source() -> AsyncIterator[tuple[str, str]]:
            for pair in pairs:
                yield pair
            raise LookupError("the feed went away")

        seen: list[RenewalOutcome] = []
        with pytest.raises(LookupError, match="feed"):
            await drain(client.renew_many(source(), concurrency=2), seen)
        assert sorted(o.device_id for o in seen) == sorted(d for d, _ in pairs)

    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_a_source_that_cannot_be_opened_is_reraised_with_nothing_sent(
        self, fake: FakeClearTax, client: PcsidClient, kind: str
    ) -> None:
        class Unopenable:
            def __iter__(self) -> Iterator[tuple[str, str]]:
                raise LookupError("no such sheet")

            def __aiter__(self) -> AsyncIterator[tuple[str, str]]:
                raise LookupError("no such sheet")

        source: Any = Unopenable()
        if kind == "sync":
            del Unopenable.__aiter__
        seen: list[RenewalOutcome] = []
        with pytest.raises(LookupError, match="no such sheet"):
            await drain(client.renew_many(source, concurrency=2), seen)
        assert seen == []
        assert fake.count("renew") == 0

    async def test_bad_input_of_one_device_fails_it_without_a_request(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        (good, otp), *_ = devices(fake, 1)
        naive = dt.datetime(2030, 1, 1)  # no timezone: refused
        requests: list[Any] = [
            RenewalRequest("dev-blank-otp", ""),
            RenewalRequest("dev-bad-vat", "123456", vat="300 0"),
            RenewalRequest("dev-naive-expiry", "123456", otp_expires_at=naive),
            RenewalRequest("dev-str-expiry", "123456", otp_expires_at="tomorrow"),  # type: ignore[arg-type]
            RenewalRequest(12345, "123456"),  # type: ignore[arg-type]
            RenewalRequest("   ", "123456"),
            (good, otp),
        ]
        outcomes = await collect(client.renew_many(requests))
        assert len(outcomes) == len(requests)
        bad = [o for o in outcomes if o.device_id != good]
        assert all(o.state is FAILED for o in bad)
        assert all(isinstance(o.error, InvalidArgumentError) for o in bad)
        assert all(o.attempts == 0 for o in bad)
        assert fake.count("renew") == 1
        messages = " ".join(str(o.error) for o in bad)
        for name in ("otp", "vat", "timezone-aware", "datetime", "device_id"):
            assert name in messages

    async def test_an_unexpected_exception_is_still_one_outcome(self, fake: FakeClearTax) -> None:
        class Broken(PcsidClient):
            async def renew(
                self,
                device_id: str,
                otp: str,
                *,
                vat: str | None = None,
                _stats: CallStats | None = None,
            ) -> RenewalResult:
                if device_id == "sent-then-broke" and _stats is not None:
                    _stats.attempts = 1
                raise RuntimeError(f"boom with {otp} and {TOKEN}")

        async with Broken(TOKEN, fake.vat, base_url=fake.url) as client:
            outcomes = by_device(
                await collect(
                    client.renew_many(
                        [("never-sent", "otp-secret-1111"), ("sent-then-broke", "otp-secret-2222")]
                    )
                )
            )
        assert outcomes["never-sent"].state is FAILED
        assert outcomes["sent-then-broke"].state is UNKNOWN
        for outcome in outcomes.values():
            text = str(outcome.error)
            assert "RuntimeError" in text
            assert "otp-secret" not in text
            assert TOKEN not in text
            assert isinstance(outcome.error, PcsidError)
            assert isinstance(outcome.error.__cause__, RuntimeError)


class TestConcurrency:
    async def test_the_server_never_sees_more_than_concurrency_requests_at_once(self) -> None:
        async with FakeClearTax(
            token=TOKEN, latency=0.003, renew_starts_activity=True, activity_polls=2
        ) as fake:
            pairs = devices(fake, 120)
            async with make_client(fake) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=6, **FAST_POLLS))
            assert all(o.ok for o in outcomes)
            assert 2 <= fake.max_in_flight <= 6
            assert fake.count("status") >= 120

    async def test_concurrency_is_capped_at_the_clients_max_connections(self) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.003) as fake:
            pairs = devices(fake, 40)
            async with make_client(fake, max_connections=3) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=50))
            assert len(outcomes) == 40
            assert fake.max_in_flight <= 3


class TestLazyPulling:
    async def test_only_about_concurrency_items_are_pulled_before_the_first_outcome(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pulled = 0

        def endless() -> Iterator[tuple[str, str]]:
            nonlocal pulled
            for i in range(100_000):
                pulled += 1
                yield (f"unknown-device-{i}", "123456")

        outcomes = client.renew_many(endless(), concurrency=4)
        first = await anext(outcomes)
        pulled_at_first = pulled
        await outcomes.aclose()
        assert first.state is FAILED  # the fake does not know these devices
        # At most one per worker, plus the outcomes the bounded queue holds, plus this one.
        assert pulled_at_first <= 2 * 4 + 1
        assert pulled <= 2 * 4 + 1

    async def test_outcomes_waiting_for_a_slow_consumer_are_bounded(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pulled = 0

        def endless() -> Iterator[tuple[str, str]]:
            nonlocal pulled
            for i in range(100_000):
                pulled += 1
                yield (f"dup-{i % 2}", "123456")  # nearly all duplicates: instant outcomes

        async with contextlib.aclosing(client.renew_many(endless(), concurrency=3)) as outcomes:
            await anext(outcomes)
            await asyncio.sleep(0.02)  # a consumer busy elsewhere
            assert pulled <= 2 * 3 + 2


class TestLeavingEarly:
    async def test_break_and_aclose_leave_no_tasks_and_send_nothing_more(self) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.01) as slow:
            pairs = devices(slow, 200)
            async with make_client(slow) as client:
                outcomes = client.renew_many(pairs, concurrency=8)
                async for _ in outcomes:
                    break
                await outcomes.aclose()
                await settle()
                assert client_tasks() == set()
                sent = slow.count("renew")
                await asyncio.sleep(0.05)
                assert slow.count("renew") == sent
                # One in flight per worker, plus the outcomes the queue held, plus the first.
                assert sent <= 2 * 8 + 1

    async def test_break_without_aclose_cleans_up_when_the_generator_is_collected(
        self,
    ) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.01) as slow:
            pairs = devices(slow, 200)
            async with make_client(slow) as client:
                async for _ in client.renew_many(pairs, concurrency=8):
                    break
                gc.collect()
                for _ in range(200):
                    if not client_tasks():
                        break
                    await asyncio.sleep(0.005)
                assert client_tasks() == set()

    async def test_cancelling_the_consumer_cancels_every_worker(self) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.05) as slow:
            pairs = devices(slow, 50)
            async with make_client(slow) as client:

                async def consume() -> None:
                    async for _ in client.renew_many(pairs, concurrency=5):
                        pass

                task = asyncio.create_task(consume())
                await asyncio.sleep(0.02)  # workers are waiting for answers
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await settle()
                assert client_tasks() == set()

    async def test_a_second_cancellation_during_cleanup_still_waits_for_the_workers(
        self, client: PcsidClient
    ) -> None:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def slow_to_stop() -> AsyncIterator[tuple[str, str]]:
            entered.set()
            try:
                await asyncio.sleep(10)
            finally:
                await release.wait()  # a source that takes a while to clean up
            yield ("never", "123456")

        async def consume() -> None:
            async for _ in client.renew_many(slow_to_stop(), concurrency=1):
                pass

        task = asyncio.create_task(consume())
        await entered.wait()
        task.cancel()
        await settle()  # the consumer now waits for the worker to stop
        task.cancel()
        await settle()
        assert not task.done()  # still waiting: the worker has not finished
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client_tasks() == set()

    async def test_a_worker_that_lost_its_cancellation_is_cancelled_again(
        self, client: PcsidClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("pcsid_async._batch._RECANCEL_AFTER", 0.01)
        entered = asyncio.Event()

        async def loses_a_cancellation() -> AsyncIterator[tuple[str, str]]:
            entered.set()
            # Swallowed, as aiohttp can when its own timeout fires at that very moment.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)
            await asyncio.sleep(10)
            yield ("never", "123456")

        outcomes = client.renew_many(loses_a_cancellation(), concurrency=1)
        consumer = asyncio.create_task(anext(outcomes))
        await entered.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert client_tasks() == set()

    async def test_aclosing_before_the_first_outcome_creates_nothing(
        self, client: PcsidClient
    ) -> None:
        outcomes = client.renew_many([("dev", "123456")])
        await outcomes.aclose()
        assert client_tasks() == set()


class TestRateLimits:
    async def test_a_429_with_retry_after_pauses_the_whole_batch(self) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.002) as fake:
            pairs = devices(fake, 40)
            fake.inject("renew", "rate_limit", retry_after=0.6)
            async with make_client(fake) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=4))
            log = fake.requests
        assert all(o.ok for o in outcomes)
        limited = [r for r in log if r.status == 429]
        assert len(limited) == 1
        retried = by_device(outcomes)[limited[0].device_id or ""]
        assert retried.attempts == 2
        paused_at = limited[0].answered_at
        assert paused_at is not None
        # Only requests already on their way when the 429 came back may arrive early on ...
        assert len([r for r in log if paused_at < r.received_at <= paused_at + 0.15]) <= 3
        # ... and nothing at all for most of the pause.
        assert [r for r in log if paused_at + 0.15 < r.received_at < paused_at + 0.5] == []
        assert any(r.received_at >= paused_at + 0.5 for r in log)

    async def test_a_503_with_retry_after_pauses_the_batch_and_fails_that_device(self) -> None:
        async with FakeClearTax(token=TOKEN, latency=0.002) as fake:
            pairs = devices(fake, 30)
            fake.inject("renew", "server_error", status=503, retry_after=0.6)
            async with make_client(fake) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=4))
            log = fake.requests
        unavailable = [r for r in log if r.status == 503]
        assert len(unavailable) == 1
        failed = by_device(outcomes)[unavailable[0].device_id or ""]
        assert failed.state is FAILED
        assert isinstance(failed.error, InternalServerError)
        assert failed.attempts == 1  # a POST is not re-sent after a 5xx
        assert sum(o.ok for o in outcomes) == 29
        paused_at = unavailable[0].answered_at
        assert paused_at is not None
        assert not [r for r in log if paused_at + 0.15 < r.received_at < paused_at + 0.5]

    async def test_rate_limited_until_retries_run_out_is_failed_and_says_otp_unspent(
        self, fake: FakeClearTax
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("renew", "rate_limit", times=2, retry_after=0.01)
        retry = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.002)
        async with make_client(fake, retry=retry) as client:
            (outcome,) = await collect(client.renew_many([(device, otp)]))
        assert outcome.state is FAILED
        assert isinstance(outcome.error, RateLimitError)
        assert "not spent" in str(outcome.error)
        assert outcome.error.status_code == 429
        assert isinstance(outcome.error.__cause__, RateLimitError)
        assert outcome.attempts == 2
        assert device not in fake.ledger

    async def test_the_clients_rate_limit_spaces_every_request(self) -> None:
        async with FakeClearTax(token=TOKEN) as fake:
            pairs = devices(fake, 16)
            async with make_client(fake, rate_limit=100.0) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=8))
            times = sorted(fake.request_times("renew"))
        assert all(o.ok for o in outcomes)
        assert times[-1] - times[0] >= 15 / 100 * 0.8


class TestCircuitBreakers:
    async def test_a_401_fails_that_device_and_skips_every_later_one(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 10)
        fake.inject("renew", "http", status=401)
        outcomes = await collect(client.renew_many(pairs, concurrency=1))
        assert fake.count("renew") == 1
        assert outcomes[0].state is FAILED
        assert isinstance(outcomes[0].error, AuthenticationError)
        assert len(outcomes) == 10
        for outcome in outcomes[1:]:
            assert outcome.state is SKIPPED
            assert outcome.attempts == 0
            assert isinstance(outcome.error, AuthenticationError)
            assert "not sent" in str(outcome.error)
            assert "refused (401)" in str(outcome.error)

    async def test_a_refused_token_stops_the_batch_within_one_round_of_workers(
        self, fake: FakeClearTax
    ) -> None:
        pairs = devices(fake, 300)
        async with make_client(fake, token="revoked-token-0000") as client:
            outcomes = await collect(client.renew_many(pairs, concurrency=4))
        assert len(outcomes) == 300
        states = Counter(o.state for o in outcomes)
        assert fake.count("renew") <= 4
        assert states[FAILED] == fake.count("renew")
        assert states[SKIPPED] == 300 - states[FAILED]

    async def test_a_403_stops_only_the_devices_of_that_vat(self, fake: FakeClearTax) -> None:
        mine = devices(fake, 20)
        refused_vat = "399999999999993"
        theirs = [RenewalRequest(f"their-{i}", "123456", vat=refused_vat) for i in range(20)]
        requests: list[Any] = [x for pair in zip(theirs, mine, strict=True) for x in pair]
        async with make_client(fake) as client:
            outcomes = await collect(client.renew_many(requests, concurrency=1))
        assert len(outcomes) == 40
        their = [o for o in outcomes if o.device_id.startswith("their-")]
        assert all(o.ok for o in outcomes if not o.device_id.startswith("their-"))
        assert their[0].state is FAILED
        assert isinstance(their[0].error, PermissionDeniedError)
        assert all(o.state is SKIPPED for o in their[1:])
        assert all(isinstance(o.error, PermissionDeniedError) for o in their[1:])
        assert "399999999999993" in str(their[1].error)
        assert fake.count("renew") == 21

    async def test_a_401_while_following_an_activity_skips_later_devices(self) -> None:
        async with FakeClearTax(token=TOKEN, renew_starts_activity=True, activity_polls=1) as fake:
            pairs = devices(fake, 5)
            fake.inject("status", "http", status=401)
            async with make_client(fake) as client:
                outcomes = await collect(client.renew_many(pairs, concurrency=1, **FAST_POLLS))
        assert outcomes[0].state is UNKNOWN  # renewed, final state unread
        assert isinstance(outcomes[0].error, AuthenticationError)
        assert all(o.state is SKIPPED for o in outcomes[1:])


class TestDuplicatesAndExpiry:
    async def test_a_repeated_device_is_sent_once(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        (device, otp), (other, other_otp) = devices(fake, 2)
        requests = [(device, otp), (other, other_otp), (device, "999999")]
        outcomes = await collect(client.renew_many(requests, concurrency=3))
        mine = [o for o in outcomes if o.device_id == device]
        assert [o.request.otp for o in mine if o.ok] == [otp]
        (second,) = [o for o in mine if not o.ok]
        assert second.state is SKIPPED
        assert isinstance(second.error, InvalidArgumentError)
        assert "duplicate device_id" in str(second.error)
        assert second.attempts == 0
        assert fake.count("renew", device_id=device) == 1

    async def test_an_expired_otp_is_skipped_without_a_request(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        (old, old_otp), (fresh, fresh_otp) = devices(fake, 2)
        now = dt.datetime.now(dt.timezone.utc)
        requests = [
            RenewalRequest(old, old_otp, otp_expires_at=now - dt.timedelta(seconds=1)),
            RenewalRequest(fresh, fresh_otp, otp_expires_at=now + dt.timedelta(hours=1)),
        ]
        outcomes = by_device(await collect(client.renew_many(requests)))
        assert outcomes[old].state is SKIPPED
        assert isinstance(outcomes[old].error, OtpExpiredError)
        assert outcomes[old].attempts == 0
        assert outcomes[fresh].ok
        assert fake.count("renew", device_id=old) == 0


class TestOutcomeMapping:
    async def test_a_timeout_after_sending_is_unknown_and_not_retried(
        self, fake: FakeClearTax
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("renew", "slow", delay=0.3)
        async with make_client(fake, timeout=0.05) as client:
            (outcome,) = await collect(client.renew_many([(device, otp)]))
        assert outcome.state is UNKNOWN
        assert isinstance(outcome.error, APITimeoutError)
        assert outcome.attempts == 1
        assert len(fake.ledger[device]) == 1  # it was processed: the OTP is spent

    async def test_a_drop_after_sending_is_unknown(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("renew", "drop_after")
        (outcome,) = await collect(client.renew_many([(device, otp)]))
        assert outcome.state is UNKNOWN
        assert isinstance(outcome.error, APIConnectionError)
        assert outcome.error.may_have_reached_server

    async def test_no_connection_at_all_is_failed_after_the_transports_retries(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        retry = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.002)
        async with PcsidClient(
            TOKEN, "300000000000003", base_url=f"http://127.0.0.1:{port}", retry=retry
        ) as client:
            (outcome,) = await collect(client.renew_many([("dev", "123456")]))
        assert outcome.state is FAILED
        assert isinstance(outcome.error, APIConnectionError)
        assert not outcome.error.may_have_reached_server
        assert outcome.attempts == 2

    async def test_an_unreadable_success_answer_is_unknown(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("renew", "malformed", body="{")
        (outcome,) = await collect(client.renew_many([(device, otp)]))
        assert outcome.state is UNKNOWN
        assert isinstance(outcome.error, ResponseDecodeError)
        assert "probably processed" in str(outcome.error)

    async def test_an_error_answer_is_failed(self, fake: FakeClearTax, client: PcsidClient) -> None:
        (a, a_otp), (b, b_otp) = devices(fake, 2)
        (c, c_otp), *_ = devices(fake, 1, renew_error=("8001", "ZATCA says no"))
        fake.inject("renew", "server_error", status=500)
        outcomes = by_device(
            await collect(client.renew_many([(a, a_otp), (b, b_otp), (c, c_otp)], concurrency=1))
        )
        assert isinstance(outcomes[a].error, InternalServerError)
        assert isinstance(outcomes[c].error, BadRequestError)
        assert outcomes[c].error_codes == ("8001",)
        assert outcomes[a].state is outcomes[c].state is FAILED
        assert outcomes[b].ok

    async def test_a_200_with_status_failed_is_failed_with_its_error_codes(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        body = {
            "Status": "FAILED",
            "ErrorList": [
                {"ErrorCode": "8001", "ErrorMessage": "rejected", "ErrorSource": "ZATCA"}
            ],
        }
        fake.inject("renew", "http", status=200, body=body)
        (outcome,) = await collect(client.renew_many([(device, otp)]))
        assert outcome.state is FAILED
        assert outcome.result is not None
        assert not outcome.result.ok
        assert outcome.error_codes == ("8001",)
        assert "Status FAILED" in str(outcome.error)

    async def test_the_client_closing_mid_batch_skips_the_rest(self, fake: FakeClearTax) -> None:
        pairs = devices(fake, 5)
        client = make_client(fake)
        outcomes: list[RenewalOutcome] = []
        async for outcome in client.renew_many(pairs, concurrency=1):
            outcomes.append(outcome)
            await client.close()
        assert len(outcomes) == 5
        assert outcomes[0].ok
        # The next device was already on its way when the session closed under it.
        assert outcomes[1].state in (UNKNOWN, SKIPPED)
        assert all(o.state is SKIPPED for o in outcomes[2:])
        assert all(isinstance(o.error, ClientClosedError) for o in outcomes[2:])


class TestActivities:
    @pytest.fixture
    async def fake(self) -> AsyncIterator[FakeClearTax]:
        async with FakeClearTax(token=TOKEN, renew_starts_activity=True, activity_polls=2) as f:
            yield f

    async def test_a_succeeded_activity_makes_the_device_renewed_with_its_status(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 3)
        outcomes = await collect(client.renew_many(pairs, **FAST_POLLS))
        for outcome in outcomes:
            assert outcome.ok
            assert outcome.activity is not None
            assert outcome.activity.state is ActivityState.SUCCEEDED
            assert outcome.result is not None
            assert outcome.activity.activity_id == outcome.result.activity_id

    async def test_a_failed_activity_makes_the_device_failed_with_its_checks(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        failing = {"SimplifiedTaxInvoice": "BR-KSA-01: bad"}
        pairs = devices(fake, 1, failing_checks=failing)
        (outcome,) = await collect(client.renew_many(pairs, **FAST_POLLS))
        assert outcome.state is FAILED
        assert isinstance(outcome.error, ActivityFailedError)
        assert "SimplifiedTaxInvoice" in str(outcome.error)
        assert outcome.activity is not None
        assert [c.value for c in outcome.activity.failed_checks] == ["SimplifiedTaxInvoice"]

    async def test_an_activity_past_its_timeout_is_unknown(self, fake: FakeClearTax) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("status", "http", status=503, times=1000, retry_after=0.001)
        async with make_client(fake) as client:
            (outcome,) = await collect(
                client.renew_many([(device, otp)], activity_timeout=0.05, **FAST_POLLS)
            )
        assert outcome.state is UNKNOWN
        assert isinstance(outcome.error, ActivityTimeoutError)
        assert "was renewed" in str(outcome.error)
        assert "pcsid-async status" in str(outcome.error)
        assert outcome.result is not None
        assert outcome.result.ok

    async def test_a_permanent_poll_error_is_unknown(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        ((device, otp),) = devices(fake, 1)
        fake.inject("status", "http", status=404)
        (outcome,) = await collect(client.renew_many([(device, otp)], **FAST_POLLS))
        assert outcome.state is UNKNOWN
        assert isinstance(outcome.error, NotFoundError)
        assert "final state" in str(outcome.error)

    async def test_not_awaiting_activities_renews_without_polling(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        pairs = devices(fake, 2)
        outcomes = await collect(client.renew_many(pairs, await_activities=False))
        assert all(o.ok and o.activity is None for o in outcomes)
        assert all(o.result is not None and o.result.activity_id for o in outcomes)
        assert fake.count("status") == 0
