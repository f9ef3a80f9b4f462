"""The batch's unreachable-API breaker: a dead host costs a few devices, not every device."""

from __future__ import annotations

import socket

import pytest
from _scripted import ScriptedServer, drop, quick_retry
from conftest import ClientFactory

from pcsid_async import (
    APIConnectionError,
    InvalidArgumentError,
    OutcomeState,
    RenewalOutcome,
    RenewalRequest,
)
from pcsid_async._breaker import UNREACHABLE_AFTER, UnreachableBreaker


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rows(n: int) -> list[RenewalRequest]:
    return [RenewalRequest(f"dev-{i:04d}", f"{100000 + i}") for i in range(n)]


async def run(
    client_factory: ClientFactory, url: str, n: int, **kwargs: object
) -> list[RenewalOutcome]:
    client = client_factory(url, retry=quick_retry(max_attempts=3))
    return [outcome async for outcome in client.renew_many(rows(n), **kwargs)]  # type: ignore[arg-type]


def _connection_error(device: str) -> APIConnectionError:
    return APIConnectionError(
        f"POST {device}: refused", method="POST", path="/p", may_have_reached_server=False
    )


class TestDeadHost:
    async def test_a_closed_port_skips_the_rest_after_a_few_devices(
        self, make_client: ClientFactory
    ) -> None:
        url = f"http://127.0.0.1:{closed_port()}/api"
        concurrency = 8
        outcomes = await run(make_client, url, 300, concurrency=concurrency)

        assert sorted(o.device_id for o in outcomes) == [r.device_id for r in rows(300)]
        tried = [o for o in outcomes if o.attempts]
        # The breaker opens after 5 in a row; the devices in flight then finish as they would.
        assert UNREACHABLE_AFTER <= len(tried) <= UNREACHABLE_AFTER + concurrency - 1
        assert sum(o.attempts for o in outcomes) <= 3 * (UNREACHABLE_AFTER + concurrency - 1)
        assert {o.state for o in tried} == {OutcomeState.FAILED}
        skipped = [o for o in outcomes if not o.attempts]
        assert len(skipped) == 300 - len(tried)
        for outcome in skipped:
            assert outcome.state is OutcomeState.SKIPPED
            assert isinstance(outcome.error, APIConnectionError)
            assert outcome.error.may_have_reached_server is False
            text = str(outcome.error)
            assert text.startswith("not sent: the API is unreachable: 5 devices in a row")
            assert "The OTP was not spent" in text
            assert outcome.request.otp not in text

    async def test_unreachable_after_sets_the_threshold(self, make_client: ClientFactory) -> None:
        url = f"http://127.0.0.1:{closed_port()}/api"
        outcomes = await run(make_client, url, 40, concurrency=1, unreachable_after=2)
        assert [o.state for o in outcomes[:2]] == [OutcomeState.FAILED] * 2
        assert {o.state for o in outcomes[2:]} == {OutcomeState.SKIPPED}
        assert "2 devices in a row (from 'dev-0000')" in str(outcomes[2].error)

    async def test_none_never_opens_it(self, make_client: ClientFactory) -> None:
        url = f"http://127.0.0.1:{closed_port()}/api"
        outcomes = await run(make_client, url, 12, concurrency=4, unreachable_after=None)
        assert {o.state for o in outcomes} == {OutcomeState.FAILED}
        assert all(o.attempts == 3 for o in outcomes)

    @pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
    async def test_a_bad_threshold_is_refused(
        self, make_client: ClientFactory, bad: object
    ) -> None:
        client = make_client("http://127.0.0.1:1/api")
        with pytest.raises(InvalidArgumentError, match="unreachable_after"):
            client.renew_many(rows(1), unreachable_after=bad)  # type: ignore[arg-type]


class TestWhatMayHaveBeenSent:
    async def test_drops_after_sending_are_unknown_and_never_open_it(
        self, make_client: ClientFactory
    ) -> None:
        async with ScriptedServer(drop()) as server:
            outcomes = await run(make_client, server.url, 20, concurrency=4)
        assert {o.state for o in outcomes} == {OutcomeState.UNKNOWN}
        assert all(o.attempts == 1 for o in outcomes)  # each sent once, none skipped


class TestTheCount:
    def test_an_answer_in_between_resets_the_run(self) -> None:
        breaker = UnreachableBreaker(3)
        for device in ("a", "b"):
            breaker.failed(device, _connection_error(device))
        breaker.reached()
        for device in ("c", "d"):
            breaker.failed(device, _connection_error(device))
        assert breaker.opened is None
        breaker.failed("e", _connection_error("e"))
        assert breaker.opened is not None
        assert "3 devices in a row (from 'c')" in breaker.reason()
        breaker.reached()  # too late: an open breaker stays open
        breaker.failed("f", _connection_error("f"))
        assert "(from 'c')" in breaker.reason()

    def test_no_threshold_counts_nothing(self) -> None:
        breaker = UnreachableBreaker(None)
        for device in "abcdefgh":
            breaker.failed(device, _connection_error(device))
        assert breaker.opened is None
