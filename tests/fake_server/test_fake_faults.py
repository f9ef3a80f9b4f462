"""Fault plans, injections and how each fault is acted out (``_faults``, ``_inject``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import attrs
import pytest

from fake_server._http import (
    auth,
    poll,
    renew,
)
from pcsid_async.testing import (
    FAULT_NAMES,
    EndpointFaults,
    FakeClearTax,
    FaultPlan,
)


class TestFaultPlanValidation:
    def test_probabilities_outside_0_1_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="probability"):
            EndpointFaults(rate_limit=1.5)
        with pytest.raises(ValueError, match="probability"):
            EndpointFaults(slow=-0.1)

    def test_probabilities_summing_over_1_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="sum"):
            EndpointFaults(rate_limit=0.6, server_error=0.5)
        assert EndpointFaults(rate_limit=0.1, server_error=0.2, slow=0.7).total == pytest.approx(1)

    def test_uniform_gives_every_endpoint_the_same_faults(self) -> None:
        plan = FaultPlan.uniform(rate_limit=0.25, slow_delay=0.1)
        assert (
            plan.renew
            == plan.generate
            == plan.status
            == EndpointFaults(rate_limit=0.25, slow_delay=0.1)
        )
        with pytest.raises(TypeError):
            FaultPlan.uniform(teapot=0.1)

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            (("renewal", "slow"), {}),
            (("renew", "explode"), {}),
            (("renew", "slow"), {"times": 0}),
            (("renew", "http"), {}),
            (("renew", "http"), {"status": 1000}),
            (("renew", "slow"), {"status": 500}),
            (("renew", "drop_after"), {"retry_after": 1.0}),
            (("renew", "drop_after"), {"body": "{"}),
            (("renew", "malformed"), {"delay": 1.0}),
        ],
    )
    async def test_invalid_injections_are_rejected(
        self, fake: FakeClearTax, args: tuple[str, str], kwargs: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - every case has its own message
            fake.inject(*args, **kwargs)

    async def test_the_fault_plan_can_be_switched_at_runtime(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity()
        fake.faults = FaultPlan(status=EndpointFaults(rate_limit=1.0))
        assert (await poll(session, fake, activity_id)).status == 429
        fake.faults = None
        assert (await poll(session, fake, activity_id)).status == 200


class TestFaults:
    async def test_rate_limit_is_429_with_retry_after_and_nothing_performed(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        fake.inject("renew", "rate_limit", retry_after=0.2)
        fake.inject("renew", "rate_limit")
        for expected in ("0.2", "1"):
            answer = await renew(session, fake, device, otp)
            assert answer.status == 429
            assert answer.headers["Retry-After"] == expected
            assert set(answer.json()) == {"ErrorCode", "ErrorMessage", "ErrorSource"}
        assert device not in fake.ledger
        assert (await renew(session, fake, device, otp)).status == 200
        assert [r.fault for r in fake.requests] == ["rate_limit", "rate_limit", None]

    @pytest.mark.parametrize(
        ("retry_after", "header"),
        [
            (0.05, "0.05"),
            (1.0, "1"),
            (1.2, "2"),
            (30, "30"),
            ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ],
    )
    async def test_retry_after_formatting(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        retry_after: float | str,
        header: str | None,
    ) -> None:
        fake.inject("status", "server_error", status=503, retry_after=retry_after)
        answer = await poll(session, fake, "x")
        assert answer.status == 503
        assert answer.headers["Retry-After"] == (retry_after if header is None else header)

    async def test_injected_server_errors_are_not_performed_and_never_look_like_activities(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity(polls=1)
        fake.inject("status", "server_error")
        fake.inject("status", "server_error", status=502, body="<html>bad gateway</html>")
        plain = await poll(session, fake, activity_id)
        assert plain.status == 500
        assert "Retry-After" not in plain.headers
        assert plain.json() == {
            "ErrorCode": "4040",
            "ErrorMessage": "Unhandled exception",
            "ErrorSource": "CLEARTAX",
        }
        gateway = await poll(session, fake, activity_id)
        assert (gateway.status, gateway.text) == (502, "<html>bad gateway</html>")
        assert gateway.headers["Content-Type"].startswith("text/html")
        assert fake.activity(activity_id).polls == 0
        assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"

    async def test_random_server_errors_vary_status_and_body_kind(
        self, session: aiohttp.ClientSession
    ) -> None:
        plan = FaultPlan(status=EndpointFaults(server_error=1.0))
        async with FakeClearTax(faults=plan, retry_after=0.01) as fake:
            activity_id = fake.create_activity()
            answers = [await poll(session, fake, activity_id) for _ in range(40)]
        assert {a.status for a in answers} == {500, 502, 503, 504}
        kinds = {a.headers["Content-Type"].split(";")[0] for a in answers}
        assert kinds == {"application/json", "text/html", "text/plain"}
        for answer in answers:
            assert ("Retry-After" in answer.headers) == (answer.status == 503)
            assert "ActivityType" not in answer.text
            assert '"Status"' not in answer.text

    async def test_drop_before_disconnects_without_performing(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        fake.inject("renew", "drop_before")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await renew(session, fake, device, otp)
        assert device not in fake.ledger
        assert fake.requests[-1].status is None
        assert fake.requests[-1].fault == "drop_before"
        assert (await renew(session, fake, device, otp)).status == 200

    async def test_drop_after_disconnects_after_performing(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        fake.inject("renew", "drop_after")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await renew(session, fake, device, otp)
        assert len(fake.ledger[device]) == 1
        retry = await renew(session, fake, device, otp)  # the blind retry a client must avoid
        assert retry.json()["ErrorList"][0]["ErrorCode"] == "Invalid-OTP"

    async def test_aiohttp_silently_retries_a_dropped_get_once(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity()
        fake.inject("status", "drop_before")
        assert (await poll(session, fake, activity_id)).status == 200
        assert fake.count("status") == 2
        fake.inject("status", "drop_after", times=2)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await poll(session, fake, activity_id)
        assert fake.activity(activity_id).polls == 3

    async def test_drops_log_nothing_alarming(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        device = fake.add_device()
        fake.inject("renew", "drop_before")
        fake.inject("renew", "drop_after")
        for _ in range(2):
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await renew(session, fake, device, fake.issue_otp())
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

    async def test_slow_performs_then_answers_late(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first, second = fake.add_devices(2)
        fake.inject("renew", "slow", delay=0.1, times=2)
        with pytest.raises(asyncio.TimeoutError):
            await renew(session, fake, first, fake.issue_otp(), timeout=0.02)
        assert len(fake.ledger[first]) == 1
        late = await renew(session, fake, second, fake.issue_otp(), timeout=2.0)
        assert late.status == 200
        record = fake.requests[-1]
        assert record.fault == "slow"
        assert record.answered_at is not None
        assert record.answered_at - record.received_at >= 0.1

    async def test_slow_uses_the_plans_slow_delay(self, session: aiohttp.ClientSession) -> None:
        plan = FaultPlan(status=EndpointFaults(slow=1.0, slow_delay=0.02))
        async with FakeClearTax(faults=plan) as fake:
            assert (await poll(session, fake, fake.create_activity())).status == 200
            record = fake.requests[-1]
            assert record.fault == "slow"
            assert record.answered_at is not None
            assert record.answered_at - record.received_at >= 0.02

    async def test_malformed_performs_then_answers_unparseable_bodies(
        self, session: aiohttp.ClientSession
    ) -> None:
        plan = FaultPlan(renew=EndpointFaults(malformed=1.0))
        async with FakeClearTax(faults=plan, any_otp=True) as fake:
            device = fake.add_device()
            answers = [await renew(session, fake, device, "111111") for _ in range(20)]
            assert len(fake.ledger[device]) == 20
        assert {a.status for a in answers} == {200}
        assert {a.text[:1] for a in answers} == {"{", "<", ""}
        for answer in answers:
            with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
                answer.json()

    async def test_injected_malformed_cuts_the_normal_body_or_sends_the_given_one(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity()
        fake.inject("status", "malformed")
        fake.inject("status", "malformed", body="<html>oops</html>")
        cut = await poll(session, fake, activity_id)
        assert cut.status == 200
        assert cut.text.startswith('{"ActivityType":"ZATCA_COMPLIANCE_INVOICE"')
        with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
            cut.json()
        assert (await poll(session, fake, activity_id)).text == "<html>oops</html>"

    async def test_extra_fields_add_unknown_keys_at_several_levels(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(failing_checks={"StandardTaxInvoice": "bad"})
        activity_id = fake.create_activity(device)
        fake.inject("status", "extra_fields")
        fake.inject("renew", "extra_fields")
        answer = await poll(session, fake, activity_id)
        assert answer.status == 500
        body = answer.json()
        assert body["Status"] == "FAILED"
        assert "XRequestTrace" in body
        assert "XNote" in body["RequestMetaInfo"]
        assert "XCheckEngine" in body["ResponseInfo"]["ResponseMetaData"]
        renewal = (await renew(session, fake, device, "000000")).json()  # an unknown OTP
        assert "XRequestTrace" in renewal
        assert "XHint" in renewal["ErrorList"][0]

    async def test_http_fault_answers_a_plain_error_even_to_a_valid_request(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity()
        fake.inject("status", "http", status=401)
        answer = await poll(session, fake, activity_id)
        assert answer.status == 401
        assert answer.json()["ErrorCode"] == "100401"
        assert fake.activity(activity_id).polls == 0
        assert fake.requests[-1].fault == "http"

    async def test_injections_beat_the_plan_and_skip_ineligible_requests(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity()
        fake.faults = FaultPlan.uniform(rate_limit=1.0)
        fake.inject("status", "extra_fields")
        unauthorized = await poll(session, fake, activity_id, headers=auth(fake, token="nope"))
        assert unauthorized.status == 401  # ineligible: no fault, injection kept
        answer = await poll(session, fake, activity_id)
        assert answer.status == 200
        assert "XRequestTrace" in answer.json()
        assert (await poll(session, fake, activity_id)).status == 429

    async def test_the_same_seed_and_request_order_give_the_same_faults(
        self, session: aiohttp.ClientSession
    ) -> None:
        plan = FaultPlan.uniform(rate_limit=0.2, server_error=0.2, malformed=0.2, extra_fields=0.2)

        async def run(seed: int) -> list[tuple[str | None, int, str]]:
            async with FakeClearTax(
                faults=plan, seed=seed, any_otp=True, auto_register=True
            ) as fake:
                seen = []
                for i in range(30):
                    answer = await renew(session, fake, f"dev-{i}", "111111")
                    seen.append((fake.requests[-1].fault, answer.status, answer.text))
                return seen

        first = await run(seed=4)
        assert first == await run(seed=4)
        assert [f for f, _, _ in first] != [f for f, _, _ in await run(seed=5)]
        assert {f for f, _, _ in first} == {
            None,
            "rate_limit",
            "server_error",
            "malformed",
            "extra_fields",
        }

    def test_fault_names_cover_every_endpoint_faults_probability(self) -> None:
        fields = {f.name for f in attrs.fields(EndpointFaults)} - {"slow_delay"}
        assert set(FAULT_NAMES) == fields
