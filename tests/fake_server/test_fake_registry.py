"""Devices and single-use OTPs: renew-pcsid against the registry (``_registry``)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from fake_server._http import (
    INVALID_OTP,
    OBJECT_ID,
    generate,
    poll,
    renew,
)
from pcsid_async.testing import (
    FakeClearTax,
)


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
        assert answer.json() == INVALID_OTP

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

    async def test_an_unknown_otp_is_the_providers_invalid_otp_body(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device()
        answer = await renew(session, fake, device, "000000")
        assert answer.status == 400
        assert answer.json() == INVALID_OTP
        assert device not in fake.ledger

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
