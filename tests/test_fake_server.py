"""Tests of the fake ClearTax server itself, with a raw aiohttp client over loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
import trustme

from pcsid_async.testing import (
    API_PREFIX,
    CHECK_NAMES,
    FAULT_NAMES,
    EndpointFaults,
    FakeClearTax,
    FaultPlan,
    run_fake_server,
)

RENEW = "/onboarding/renew-pcsid"
GENERATE = "/onboarding/generate-csid"
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def status_path(activity_id: str) -> str:
    return f"/onboarding/{activity_id}/pcsid-status"


@attrs.frozen
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def auth(fake: FakeClearTax, *, token: str | None = None, vat: str | None = None) -> dict[str, str]:
    return {
        "x-cleartax-auth-token": fake.token if token is None else token,
        "vat": fake.vat if vat is None else vat,
    }


async def call(
    session: aiohttp.ClientSession,
    fake: FakeClearTax,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    data: bytes | None = None,
    timeout: float | None = None,
) -> Answer:
    async with session.request(
        method,
        fake.url + path,
        headers=auth(fake) if headers is None else headers,
        json=json_body,
        data=data,
        timeout=aiohttp.ClientTimeout(total=timeout) if timeout is not None else None,
    ) as response:
        return Answer(response.status, dict(response.headers), await response.text())


async def renew(
    session: aiohttp.ClientSession,
    fake: FakeClearTax,
    device_id: str,
    otp: str,
    **kwargs: Any,
) -> Answer:
    return await call(
        session, fake, "POST", RENEW, json_body={"DeviceId": device_id, "Otp": otp}, **kwargs
    )


async def generate(
    session: aiohttp.ClientSession, fake: FakeClearTax, device_id: str, otp: str
) -> Answer:
    return await call(
        session, fake, "POST", GENERATE, json_body={"DeviceId": device_id, "Otp": otp}
    )


async def poll(
    session: aiohttp.ClientSession, fake: FakeClearTax, activity_id: str, **kwargs: Any
) -> Answer:
    return await call(session, fake, "GET", status_path(activity_id), **kwargs)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every millisecond (Python 3.10: no timeout())."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


@pytest.fixture
async def fake() -> AsyncIterator[FakeClearTax]:
    async with FakeClearTax() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class TestPublicNames:
    def test_the_exported_names_are_sorted_and_exactly_these(self) -> None:
        from pcsid_async import testing

        assert testing.__all__ == sorted(testing.__all__)
        assert set(testing.__all__) == {
            "API_PREFIX",
            "ActivityView",
            "CHECK_NAMES",
            "DeviceView",
            "EndpointFaults",
            "FAULT_NAMES",
            "FakeClearTax",
            "FaultPlan",
            "ProcessedRenewal",
            "RecordedRequest",
            "SampleCredentials",
            "run_fake_server",
        }

    def test_the_fake_imports_nothing_else_from_the_sdk(self) -> None:
        import ast
        import pathlib

        from pcsid_async import testing

        for module in pathlib.Path(testing.__file__).parent.glob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    inside = name == "pcsid_async" or name.startswith("pcsid_async.")
                    assert not inside or name.startswith("pcsid_async.testing"), (module, name)


class TestLifecycle:
    async def test_url_is_loopback_under_the_api_prefix_on_a_picked_port(
        self, fake: FakeClearTax
    ) -> None:
        assert fake.url == f"http://127.0.0.1:{fake.port}{API_PREFIX}"
        assert fake.port > 0

    async def test_url_before_start_is_an_error(self) -> None:
        unstarted = FakeClearTax()
        with pytest.raises(RuntimeError, match="not started"):
            _ = unstarted.url
        await unstarted.close()

    async def test_close_is_idempotent_and_a_closed_fake_cannot_restart(self) -> None:
        server = FakeClearTax()
        await server.start()
        await server.close()
        await server.close()
        with pytest.raises(RuntimeError, match="closed"):
            await server.start()

    async def test_starting_twice_is_an_error(self, fake: FakeClearTax) -> None:
        with pytest.raises(RuntimeError, match="already started"):
            await fake.start()

    async def test_close_leaves_no_task_behind_even_with_slow_and_waiting_requests(
        self, session: aiohttp.ClientSession
    ) -> None:
        server = FakeClearTax(latency={"status": 5.0}, any_otp=True, auto_register=True)
        await server.start()
        server.inject("renew", "slow", delay=5.0)
        slow = asyncio.ensure_future(renew(session, server, "dev-1", "111111", timeout=0.05))
        waiting = asyncio.ensure_future(poll(session, server, "628f37b61ed71a6638b848e4"))
        await eventually(lambda: server.in_flight == 2)
        with pytest.raises(asyncio.TimeoutError):
            await slow
        await server.close()
        # Dropped unprocessed; aiohttp retries the GET once and finds the port closed.
        with pytest.raises(aiohttp.ClientConnectionError):
            await waiting
        assert server.in_flight == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}
        # The slow renewal had been performed before its answer was held back.
        assert len(server.ledger["dev-1"]) == 1

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"vats": ()},
            {"vats": ("",)},
            {"token": ""},
            {"latency": -1.0},
            {"latency": {"renewal": 0.1}},
            {"activity_polls": 0},
            {"activity_delay": -0.5},
            {"timestamp_format": "rfc2822"},
            {"otp_ttl": -1.0},
            {"retry_after": -1.0},
        ],
    )
    def test_invalid_configuration_is_rejected(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - every case has its own message
            FakeClearTax(**kwargs)


class TestAuthentication:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", RENEW), ("POST", GENERATE), ("GET", status_path("628f37b61ed71a6638b848e4"))],
    )
    @pytest.mark.parametrize("token", [None, "", "wrong-token"])
    async def test_missing_empty_or_wrong_token_is_401_with_a_bare_error_object(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        token: str | None,
    ) -> None:
        headers = {"vat": fake.vat}
        if token is not None:
            headers["x-cleartax-auth-token"] = token
        answer = await call(session, fake, method, path, headers=headers, json_body={})
        assert answer.status == 401
        assert answer.json() == {
            "ErrorCode": "100401",
            "ErrorMessage": "Authentication Failed",
            "ErrorSource": "CLEARTAX",
        }
        assert fake.requests[-1].authorized is False

    async def test_missing_vat_on_a_post_is_400_with_status_failed_and_path_vat(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        headers = {"x-cleartax-auth-token": fake.token}
        answer = await call(session, fake, "POST", RENEW, headers=headers, json_body={})
        assert answer.status == 400
        body = answer.json()
        assert body["Status"] == "FAILED"
        assert [e["Path"] for e in body["ErrorList"]] == ["vat"]

    async def test_blank_vat_on_status_is_400_with_an_error_list_and_no_status(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        answer = await poll(session, fake, "x", headers=auth(fake, vat="  "))
        assert answer.status == 400
        assert answer.json() == {
            "ErrorList": [
                {
                    "ErrorCode": "6002",
                    "ErrorMessage": "vat header is mandatory",
                    "ErrorSource": "CLEARTAX",
                    "Path": "vat",
                }
            ]
        }

    async def test_a_vat_the_user_is_not_admin_for_is_403_with_a_bare_error_object(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        answer = await renew(session, fake, device, otp, headers=auth(fake, vat="399999999999993"))
        assert answer.status == 403
        assert answer.json() == {
            "ErrorCode": "5002",
            "ErrorMessage": "User is not an Admin for this VAT",
            "ErrorSource": "CLEARTAX",
        }
        assert fake.ledger == {}

    async def test_an_authorized_request_is_logged_as_authorized(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        await poll(session, fake, "628f37b61ed71a6638b848e4")
        assert fake.requests[-1].authorized is True


class TestBodyValidation:
    @pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
    async def test_a_body_that_is_not_a_json_object_is_400(
        self, fake: FakeClearTax, session: aiohttp.ClientSession, raw: bytes
    ) -> None:
        answer = await call(session, fake, "POST", RENEW, data=raw)
        assert answer.status == 400
        body = answer.json()
        assert body["Status"] == "FAILED"
        assert body["ErrorList"][0]["ErrorCode"] == "6002"
        assert "DeviceId" not in body

    @pytest.mark.parametrize(
        ("payload", "paths"),
        [
            ({"Otp": "123456"}, ["DeviceId"]),
            ({"DeviceId": "   ", "Otp": "123456"}, ["DeviceId"]),
            ({"DeviceId": 42, "Otp": "123456"}, ["DeviceId"]),
            ({"DeviceId": "x" * 37, "Otp": "123456"}, ["DeviceId"]),
            ({"DeviceId": "dev-1"}, ["Otp"]),
            ({"DeviceId": "dev-1", "Otp": ""}, ["Otp"]),
            ({}, ["DeviceId", "Otp"]),
        ],
    )
    @pytest.mark.parametrize("path", [RENEW, GENERATE])
    async def test_missing_or_blank_fields_are_400_naming_each_field_in_path(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        path: str,
        payload: dict[str, Any],
        paths: list[str],
    ) -> None:
        answer = await call(session, fake, "POST", path, json_body=payload)
        assert answer.status == 400
        body = answer.json()
        assert set(body) == {"Status", "ErrorList"}
        assert body["Status"] == "FAILED"
        assert [e["Path"] for e in body["ErrorList"]] == paths
        assert all(e["ErrorSource"] == "CLEARTAX" for e in body["ErrorList"])

    async def test_a_rejected_body_does_not_use_up_the_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        await call(session, fake, "POST", RENEW, json_body={"Otp": otp})
        assert (await renew(session, fake, device, otp)).status == 200


class TestRenew:
    async def test_success_is_200_generated_with_the_device_id_and_an_empty_error_list(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        answer = await renew(session, fake, device, fake.issue_otp())
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json() == {"Status": "GENERATED", "DeviceId": device, "ErrorList": []}
        view = fake.device(device)
        assert view.renewals == 1
        assert view.has_pcsid is True

    async def test_a_device_without_pcsid_is_400_6002_and_keeps_the_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        otp = fake.issue_otp()
        answer = await renew(session, fake, device, otp)
        assert answer.status == 400
        assert answer.json()["ErrorList"] == [
            {
                "ErrorCode": "6002",
                "ErrorMessage": "Device has no PCSID to renew; generate one first",
                "ErrorSource": "CLEARTAX",
                "Path": "DeviceId",
            }
        ]
        assert (await generate(session, fake, device, otp)).status == 200

    async def test_an_unknown_device_is_400_6003(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        answer = await renew(
            session, fake, "4b0e7c6a-0000-4000-8000-000000000000", fake.issue_otp()
        )
        assert answer.status == 400
        assert answer.json()["ErrorList"][0]["ErrorCode"] == "6003"

    async def test_a_device_used_with_another_admin_vat_is_400_6003(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(vats=("300000000000003", "311111111111113")) as fake:
            device = fake.add_device(vat="311111111111113")
            otp = fake.issue_otp()
            answer = await renew(session, fake, device, otp)
            assert answer.status == 400
            assert answer.json()["ErrorList"][0]["ErrorCode"] == "6003"

    async def test_a_planted_renew_error_is_a_zatca_400_that_performs_nothing(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(renew_error=("8001", "ZATCA rejected the CSR"))
        otp = fake.issue_otp()
        for _ in range(2):  # the OTP is not consumed, so the same rejection comes back
            answer = await renew(session, fake, device, otp)
            assert answer.status == 400
            assert answer.json() == {
                "Status": "FAILED",
                "ErrorList": [
                    {
                        "ErrorCode": "8001",
                        "ErrorMessage": "ZATCA rejected the CSR",
                        "ErrorSource": "ZATCA",
                    }
                ],
            }
        assert device not in fake.ledger
        assert fake.device(device).renewals == 0

    async def test_auto_register_creates_unknown_devices_on_the_fly(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(auto_register=True, any_otp=True) as fake:
            assert (await renew(session, fake, "bench-1", "000000")).status == 200
            assert (await generate(session, fake, "bench-2", "000000")).status == 200
            assert fake.device("bench-1").renewals == 1
            assert fake.device("bench-2").generations == 1

    async def test_renew_starts_activity_adds_a_pollable_activity_id(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(renew_starts_activity=True) as fake:
            device = fake.add_device()
            body = (await renew(session, fake, device, fake.issue_otp())).json()
            activity_id = body["PcsidGenerationActivityId"]
            assert OBJECT_ID.match(activity_id)
            assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"
            assert fake.ledger[device][0].activity_id == activity_id
            assert fake.activity(activity_id).origin == "renew"


class TestOtp:
    async def test_an_otp_works_once(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first, second = fake.add_devices(2)
        otp = fake.issue_otp()
        assert (await renew(session, fake, first, otp)).status == 200
        answer = await renew(session, fake, second, otp)
        assert answer.status == 400
        assert answer.json()["ErrorList"] == [
            {
                "ErrorCode": "Invalid-OTP",
                "ErrorMessage": "OTP is invalid or already used",
                "ErrorSource": "ZATCA",
                "Path": "Otp",
            }
        ]

    async def test_an_expired_otp_is_rejected_as_expired(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        expired = fake.issue_otp()
        fake.expire_otp(expired)
        short_lived = fake.issue_otp(ttl=0.0)
        for otp in (expired, short_lived):
            error = (await renew(session, fake, device, otp)).json()["ErrorList"][0]
            assert (error["ErrorCode"], error["ErrorMessage"]) == ("Invalid-OTP", "OTP has expired")

    async def test_an_unknown_otp_or_one_of_another_vat_is_invalid(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(vats=("300000000000003", "311111111111113")) as fake:
            device = fake.add_device()
            foreign = fake.issue_otp(vat="311111111111113")
            for otp in ("000000", foreign, "123345"):
                answer = await renew(session, fake, device, otp)
                assert answer.status == 400
                assert answer.json()["ErrorList"][0]["ErrorCode"] == "Invalid-OTP"

    async def test_any_otp_accepts_every_otp_every_time_including_the_sandbox_sample(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(any_otp=True) as fake:
            device = fake.add_device()
            for otp in ("123345", "123345", "whatever"):
                assert (await renew(session, fake, device, otp)).status == 200
            assert [e.otp for e in fake.ledger[device]] == ["123345", "123345", "whatever"]

    async def test_issued_otps_are_unique_six_digit_strings_other_than_the_sample(
        self, fake: FakeClearTax
    ) -> None:
        otps = fake.issue_otps(2000)
        assert len(set(otps)) == 2000
        assert all(re.fullmatch(r"\d{6}", otp) for otp in otps)
        assert "123345" not in otps

    async def test_expiring_an_otp_that_was_never_issued_is_a_key_error(
        self, fake: FakeClearTax
    ) -> None:
        with pytest.raises(KeyError):
            fake.expire_otp("999999")

    async def test_concurrent_requests_with_one_otp_renew_exactly_once(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(latency=0.02) as fake:
            devices = fake.add_devices(5)
            otp = fake.issue_otp()
            answers = await asyncio.gather(*(renew(session, fake, d, otp) for d in devices))
            assert sorted(a.status for a in answers) == [200, 400, 400, 400, 400]
            assert sum(len(entries) for entries in fake.ledger.values()) == 1


class TestGenerateAndStatus:
    async def test_generate_returns_an_object_id_and_the_activity_succeeds_on_the_nth_poll(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(activity_polls=3) as fake:
            device = fake.add_device(has_pcsid=False)
            answer = await generate(session, fake, device, fake.issue_otp())
            assert answer.status == 200
            body = answer.json()
            activity_id = body.pop("PcsidGenerationActivityId")
            assert OBJECT_ID.match(activity_id)
            assert body == {"Status": "GENERATED", "DeviceId": device, "ErrorList": []}

            for _ in range(2):
                progress = await poll(session, fake, activity_id)
                assert progress.status == 200
                pending = progress.json()
                assert pending["Status"] == "IN_PROGRESS"
                assert pending["CompletedAt"] is None
                assert pending["UpdatedAt"] == pending["CreatedAt"]
                assert pending["ResponseInfo"] == {"ResponseMetaData": None}
                assert pending["RequestMetaInfo"] == {
                    "TotalCount": 6,
                    "SuccessCount": 0,
                    "FailureCount": 0,
                }
                assert fake.device(device).has_pcsid is False

            done = await poll(session, fake, activity_id)
            assert done.status == 200
            final = done.json()
            assert final["ActivityType"] == "ZATCA_COMPLIANCE_INVOICE"
            assert final["Status"] == "SUCCEEDED"
            assert ISO_MILLIS.match(final["CompletedAt"])
            assert final["UpdatedAt"] == final["CompletedAt"]
            assert final["RequestMetaInfo"] == {
                "TotalCount": 6,
                "SuccessCount": 6,
                "FailureCount": 0,
            }
            assert final["ResponseInfo"]["ResponseMetaData"] == {
                "PcsidGenerated": "GENERATED",
                **dict.fromkeys(CHECK_NAMES, "SUCCEEDED"),
            }
            assert final["ErrorList"] == []
            assert fake.activity(activity_id).polls == 3
            assert fake.device(device).has_pcsid is True

    async def test_generate_is_not_idempotent(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        assert (await generate(session, fake, device, fake.issue_otp())).status == 200
        otp = fake.issue_otp()
        answer = await generate(session, fake, device, otp)  # activity still in progress
        assert answer.status == 400
        error = answer.json()["ErrorList"][0]
        assert (error["ErrorCode"], error["ErrorMessage"]) == (
            "6002",
            "Production CSID already generated for device",
        )
        already = fake.add_device(has_pcsid=True)
        assert (await generate(session, fake, already, otp)).status == 400
        assert (await renew(session, fake, already, otp)).status == 200  # OTP was kept

    async def test_a_failed_activity_is_http_500_with_the_activity_body_and_messages(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(
            has_pcsid=False,
            failing_checks={
                "StandardTaxInvoice": "BR-KSA-08 seller id invalid, BR-KSA-F-06 bad VAT",
                "SimplifiedTaxInvoiceDebit": "QR code missing",
            },
        )
        activity_id = (await generate(session, fake, device, fake.issue_otp())).json()[
            "PcsidGenerationActivityId"
        ]
        answer = await poll(session, fake, activity_id)
        assert answer.status == 500
        body = answer.json()
        assert body["Status"] == "FAILED"
        assert body["RequestMetaInfo"] == {"TotalCount": 6, "SuccessCount": 4, "FailureCount": 2}
        metadata = body["ResponseInfo"]["ResponseMetaData"]
        assert metadata["PcsidGenerated"] == "FAILED"
        assert metadata["StandardTaxInvoice"] == (
            "BR-KSA-08 seller id invalid, BR-KSA-F-06 bad VAT"
        )
        assert metadata["SimplifiedTaxInvoiceDebit"] == "QR code missing"
        assert metadata["StandardTaxInvoiceCredit"] == "SUCCEEDED"
        # A failed generation leaves the device without PCSID: it may try again.
        assert fake.device(device).has_pcsid is False
        assert (await generate(session, fake, device, fake.issue_otp())).status == 200

    async def test_an_activity_turns_terminal_after_its_delay_without_extra_polls(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        # Margins wide enough for a loaded 2-core machine: the first poll must land first.
        activity_id = fake.create_activity(delay=0.3)
        assert (await poll(session, fake, activity_id)).json()["Status"] == "IN_PROGRESS"
        await asyncio.sleep(0.35)
        assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"

    async def test_polls_or_delay_whichever_comes_first(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(activity_polls=100, activity_delay=0.02) as fake:
            activity_id = fake.create_activity()
            await asyncio.sleep(0.03)
            assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"
            assert fake.activity(activity_id).polls == 1

    async def test_an_unknown_activity_is_400_6003_with_an_error_list_only(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        answer = await poll(session, fake, "628f37b61ed71a6638b848e4")
        assert answer.status == 400
        assert answer.json() == {
            "ErrorList": [
                {
                    "ErrorCode": "6003",
                    "ErrorMessage": "Activity not found",
                    "ErrorSource": "CLEARTAX",
                    "Path": "ActivityId",
                }
            ]
        }

    async def test_an_activity_polled_with_another_vat_is_not_found(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(vats=("300000000000003", "311111111111113")) as fake:
            activity_id = fake.create_activity(vat="311111111111113")
            answer = await poll(session, fake, activity_id)
            assert answer.status == 400
            assert fake.activity(activity_id).polls == 0


class TestDirectActivities:
    async def test_three_checks_give_total_count_3_and_only_those_fields(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        simplified = [
            "SimplifiedTaxInvoice",
            "SimplifiedTaxInvoiceCredit",
            "SimplifiedTaxInvoiceDebit",
        ]
        activity_id = fake.create_activity(
            checks=simplified, failing_checks={"SimplifiedTaxInvoiceCredit": "bad credit note"}
        )
        answer = await poll(session, fake, activity_id)
        assert answer.status == 500
        body = answer.json()
        assert body["RequestMetaInfo"] == {"TotalCount": 3, "SuccessCount": 2, "FailureCount": 1}
        assert body["ResponseInfo"]["ResponseMetaData"] == {
            "PcsidGenerated": "FAILED",
            "SimplifiedTaxInvoice": "SUCCEEDED",
            "SimplifiedTaxInvoiceCredit": "bad credit note",
            "SimplifiedTaxInvoiceDebit": "SUCCEEDED",
        }

    async def test_a_device_lends_its_checks_to_its_activities(self, fake: FakeClearTax) -> None:
        device = fake.add_device(checks=["StandardTaxInvoice"])
        view = fake.activity(fake.create_activity(device))
        assert view.checks == ("StandardTaxInvoice",)
        assert view.device_id == device
        assert view.origin == "direct"

    async def test_complete_activity_forces_it_terminal_now(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        activity_id = fake.create_activity(polls=50)
        assert fake.activity(activity_id).state == "IN_PROGRESS"
        fake.complete_activity(activity_id)
        view = fake.activity(activity_id)
        assert view.state == "SUCCEEDED"
        assert view.completed_at is not None
        assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"checks": []},
            {"checks": ["StandardTaxInvoice", "StandardTaxInvoice"]},
            {"checks": ["CreditNote"]},
            {"checks": ["StandardTaxInvoice"], "failing_checks": {"SimplifiedTaxInvoice": "x"}},
            {"failing_checks": {"StandardTaxInvoice": ""}},
            {"polls": 0},
        ],
    )
    async def test_invalid_activity_configuration_is_rejected(
        self, fake: FakeClearTax, kwargs: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - every case has its own message
            fake.create_activity(**kwargs)

    @pytest.mark.parametrize(("fmt", "kind"), [("iso", str), ("epoch_s", int), ("epoch_ms", int)])
    async def test_timestamp_formats(
        self, session: aiohttp.ClientSession, fmt: str, kind: type
    ) -> None:
        async with FakeClearTax(timestamp_format=fmt) as fake:
            activity_id = fake.create_activity()
            body = (await poll(session, fake, activity_id)).json()
            for key in ("CreatedAt", "UpdatedAt", "CompletedAt"):
                assert type(body[key]) is kind
            created = fake.activity(activity_id).created_at.timestamp()
            if fmt == "iso":
                assert ISO_MILLIS.match(body["CreatedAt"])
            elif fmt == "epoch_s":
                assert abs(body["CreatedAt"] - created) < 60
            else:
                assert abs(body["CreatedAt"] / 1000 - created) < 60

    async def test_the_same_seed_generates_the_same_ids(self) -> None:
        def ids(fake: FakeClearTax) -> tuple[list[str], list[str], list[str]]:
            return fake.add_devices(3), fake.issue_otps(3), [fake.create_activity() for _ in "ab"]

        assert ids(FakeClearTax(seed=9)) == ids(FakeClearTax(seed=9))
        assert ids(FakeClearTax(seed=9)) != ids(FakeClearTax(seed=10))


class TestRequestLogAndLedger:
    async def test_no_secret_appears_in_any_repr(self, session: aiohttp.ClientSession) -> None:
        token = "tok-SECRET-4f1d"
        async with FakeClearTax(token=token, any_otp=True, renew_starts_activity=True) as fake:
            device = fake.add_device()
            headers = {"x-cleartax-auth-token": token, "vat": fake.vat}
            otps = ["otp-SECRET-1", "otp-SECRET-2"]
            for otp in otps:
                await renew(session, fake, device, otp, headers=headers)
            await renew(session, fake, "unknown", "otp-SECRET-3", headers=headers)
            await call(session, fake, "POST", RENEW, headers=headers, json_body={"Otp": "x"})
            texts = [repr(fake), *map(repr, fake.requests), repr(fake.ledger)]
            texts.append(repr(fake.sample_credentials()))
            for text in texts:
                assert "SECRET" not in text

    async def test_records_hold_no_field_equal_to_an_issued_otp_or_the_token(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        await renew(session, fake, device, otp)
        await renew(session, fake, device, otp)
        for record in fake.requests:
            values = attrs.astuple(record)
            assert otp not in values
            assert fake.token not in values

    async def test_a_record_describes_the_request_and_its_answer(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        await renew(session, fake, device, fake.issue_otp())
        (record,) = fake.requests
        assert record.method == "POST"
        assert record.path == API_PREFIX + RENEW
        assert record.endpoint == "renew"
        assert record.vat == fake.vat
        assert record.device_id == device
        assert record.activity_id is None
        assert record.status == 200
        assert record.fault is None
        assert record.answered_at is not None
        assert record.answered_at >= record.received_at
        assert record.authorized is True

    async def test_counts_by_endpoint_device_and_activity(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first, second = fake.add_devices(2)
        await renew(session, fake, first, fake.issue_otp())
        await renew(session, fake, second, fake.issue_otp())
        activity_id = fake.create_activity(first, polls=5)
        for _ in range(3):
            await poll(session, fake, activity_id)
        assert fake.count() == 5
        assert fake.count("renew") == 2
        assert fake.count("status") == 3
        assert fake.count("generate") == 0
        assert fake.count(device_id=first) == 4  # its renewal and the polls of its activity
        assert fake.count("renew", device_id=first) == 1
        assert fake.count(activity_id=activity_id) == 3
        assert len(fake.request_times("status")) == 3
        assert fake.request_times() == sorted(fake.request_times())

    async def test_counting_an_unknown_endpoint_is_an_error(self, fake: FakeClearTax) -> None:
        with pytest.raises(ValueError, match="endpoint"):
            fake.count("renewal")
        with pytest.raises(ValueError, match="endpoint"):
            fake.request_times("renewal")

    async def test_other_paths_are_404_or_405_and_logged_as_other(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        assert (await call(session, fake, "GET", "/nowhere")).status == 404
        answer = await call(session, fake, "GET", RENEW)
        assert answer.status == 405
        assert answer.headers["Allow"] == "POST"
        assert [r.endpoint for r in fake.requests] == ["other", "other"]

    async def test_reset_stats_clears_the_log_and_counters_but_not_the_ledger(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        await renew(session, fake, device, fake.issue_otp())
        fake.reset_stats()
        assert fake.requests == []
        assert fake.count() == 0
        assert fake.max_in_flight == 0
        assert len(fake.ledger[device]) == 1

    async def test_without_request_recording_counters_and_ledger_still_work(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(record_requests=False) as fake:
            device = fake.add_device()
            await renew(session, fake, device, fake.issue_otp())
            assert fake.count("renew") == 1
            assert fake.max_in_flight == 1
            assert len(fake.ledger[device]) == 1
            with pytest.raises(RuntimeError, match="record_requests"):
                _ = fake.requests
            with pytest.raises(RuntimeError, match="record_requests"):
                fake.count(device_id=device)

    async def test_the_ledger_records_each_performed_renewal_with_its_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        first, second = fake.issue_otps(2)
        activity_id = (await generate(session, fake, device, first)).json()[
            "PcsidGenerationActivityId"
        ]
        await poll(session, fake, activity_id)
        await renew(session, fake, device, second)
        entries = fake.ledger[device]
        assert [(e.endpoint, e.otp, e.activity_id) for e in entries] == [
            ("generate", first, activity_id),
            ("renew", second, None),
        ]
        assert first not in repr(entries)
        view = fake.device(device)
        assert (view.generations, view.renewals) == (1, 1)


class TestConcurrency:
    async def test_in_flight_and_max_in_flight_follow_concurrent_requests(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(latency=0.05) as fake:
            activity_id = fake.create_activity(polls=100)
            polls = [asyncio.ensure_future(poll(session, fake, activity_id)) for _ in range(5)]
            await eventually(lambda: fake.in_flight == 5)
            assert fake.requests[0].status is None  # logged while still in flight
            await asyncio.gather(*polls)
            assert fake.in_flight == 0
            assert fake.max_in_flight == 5
            fake.reset_stats()
            assert fake.max_in_flight == 0

    async def test_latency_applies_per_endpoint(self, session: aiohttp.ClientSession) -> None:
        async with FakeClearTax(latency={"status": 0.03}) as fake:
            await poll(session, fake, fake.create_activity())
            (record,) = fake.requests
            assert record.answered_at is not None
            assert record.answered_at - record.received_at >= 0.03


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


class TestRunFakeServer:
    async def test_serves_sample_devices_until_cancelled(
        self, session: aiohttp.ClientSession
    ) -> None:
        started: asyncio.Queue[FakeClearTax] = asyncio.Queue()
        task = asyncio.ensure_future(run_fake_server(devices=3, ready=started.put_nowait, seed=1))
        fake = await asyncio.wait_for(started.get(), timeout=5)
        credentials = fake.sample_credentials()
        assert credentials.url == fake.url
        assert credentials.token == fake.token
        assert len(credentials.devices) == 3
        assert credentials == fake.sample_credentials()  # stable until OTPs are used
        device, otp = credentials.devices[0]
        assert (await renew(session, fake, device, otp)).status == 200
        assert fake.sample_credentials().devices[0][1] != otp
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await renew(session, fake, device, otp)

    async def test_an_async_ready_callback_is_awaited(self) -> None:
        seen: list[str] = []

        async def ready(fake: FakeClearTax) -> None:
            await asyncio.sleep(0)
            seen.append(fake.url)

        task = asyncio.ensure_future(run_fake_server(devices=0, ready=ready))
        await eventually(lambda: bool(seen))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen[0].startswith("http://127.0.0.1:")


class TestHttps:
    async def test_serves_https_with_the_given_context(self) -> None:
        ca = trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with FakeClearTax(ssl_context=server_context) as fake:
            assert fake.url.startswith("https://127.0.0.1:")
            device = fake.add_device()
            connector = aiohttp.TCPConnector(ssl=client_context)
            async with aiohttp.ClientSession(connector=connector) as secure:
                assert (await renew(secure, fake, device, fake.issue_otp())).status == 200
                # Python 3.10's asyncio leaks the client's TLS transport when the server drops
                # the connection (python/cpython#90476, fixed in 3.11): a ResourceWarning.
                if sys.version_info >= (3, 11):
                    fake.inject("renew", "drop_after")
                    with pytest.raises(aiohttp.ServerDisconnectedError):
                        await renew(secure, fake, device, fake.issue_otp())
            async with aiohttp.ClientSession() as untrusting:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await renew(untrusting, fake, device, fake.issue_otp())
