"""register-device and generate-csr (Generate Device ID) over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from fake_server._http import (
    INVALID_OTP,
    OBJECT_ID,
    REGISTER,
    SERIAL,
    VAT,
    body,
    call,
    details,
    generate,
    generate_csr,
    poll,
    register,
    renew,
)
from pcsid_async.testing import EndpointFaults, FakeClearTax, FaultPlan


def the_error(answer: Any) -> tuple[str, str | None]:
    document = answer.json()
    assert answer.status == 400
    assert document["Status"] == "FAILED"
    [error] = document["ErrorList"]
    return error["ErrorCode"], error.get("Path")


class TestRegisterDevice:
    async def test_success_creates_the_device_its_csid_and_a_pollable_activity(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        otp = fake.issue_otp()
        answer = await register(session, fake, body(otp=otp))
        assert answer.status == 200
        document = answer.json()
        device_id = document["DeviceId"]
        assert uuid.UUID(device_id).version == 4
        activity_id = document["PcsidGenerationActivityId"]
        assert OBJECT_ID.match(activity_id)
        assert document == {
            "Status": "GENERATED",
            "DeviceId": device_id,
            "PcsidGenerationActivityId": activity_id,
            "ErrorList": [],
        }
        view = fake.device(device_id)
        assert (view.created_by, view.egs_serial_number, view.invoice_type) == (
            "register",
            SERIAL,
            "1100",
        )
        assert view.common_name == "Till 1"
        assert view.pending_activity == activity_id
        assert fake.activity(activity_id).origin == "register"
        assert (await poll(session, fake, activity_id)).json()["Status"] == "SUCCEEDED"
        assert fake.device(device_id).has_pcsid is True
        assert fake.device_by_serial(SERIAL) == fake.device(device_id)
        [entry] = fake.ledger[device_id]
        assert (entry.endpoint, entry.otp, entry.activity_id) == ("register", otp, activity_id)

    async def test_the_registered_device_renews_once_its_pcsid_is_issued(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        document = (await register(session, fake, body(otp=fake.issue_otp()))).json()
        device_id = document["DeviceId"]
        fake.complete_activity(document["PcsidGenerationActivityId"])
        assert (await renew(session, fake, device_id, fake.issue_otp())).status == 200
        assert (await generate(session, fake, device_id, fake.issue_otp())).status == 400

    async def test_an_explicit_invoice_type_is_kept(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        answer = await register(session, fake, body(otp=fake.issue_otp(), InvoiceType="0100"))
        assert fake.device(answer.json()["DeviceId"]).invoice_type == "0100"

    @pytest.mark.parametrize(
        ("overrides", "path"),
        [
            ({"CommonName": None}, "DeviceDetails.CommonName"),
            ({"CommonName": "  "}, "DeviceDetails.CommonName"),
            ({"Location": ""}, "DeviceDetails.Location"),
            ({"Industry": 7}, "DeviceDetails.Industry"),
            ({"EgsSerialNumber": None}, "DeviceDetails.EgsSerialNumber"),
            ({"EgsSerialNumber": "1-A|2-B"}, "DeviceDetails.EgsSerialNumber"),
            ({"EgsSerialNumber": "1-A|2-B|3-C D"}, "DeviceDetails.EgsSerialNumber"),
            ({"EgsSerialNumber": "1-A|2-B|3-C\n"}, "DeviceDetails.EgsSerialNumber"),
            ({"InvoiceType": "0000"}, "DeviceDetails.InvoiceType"),
            ({"InvoiceType": "1110"}, "DeviceDetails.InvoiceType"),
            ({"InvoiceType": "110"}, "DeviceDetails.InvoiceType"),
            ({"InvoiceType": 1100}, "DeviceDetails.InvoiceType"),
        ],
    )
    async def test_each_invalid_device_field_is_400_6002_with_its_path(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        overrides: dict[str, Any],
        path: str,
    ) -> None:
        otp = fake.issue_otp()
        answer = await register(session, fake, body(otp=otp, **overrides))
        assert the_error(answer) == ("6002", path)
        assert fake.ledger == {}
        assert (await register(session, fake, body(otp=otp))).status == 200  # OTP kept

    @pytest.mark.parametrize(
        ("payload", "paths"),
        [
            ({}, ["DeviceDetails", "OrganizationDetails", "Otp"]),
            (
                {"DeviceDetails": [], "OrganizationDetails": {"Vat": "3000"}, "Otp": ""},
                ["DeviceDetails", "OrganizationDetails.Vat", "Otp"],
            ),
            (
                {"DeviceDetails": details(), "OrganizationDetails": {}, "Otp": "1"},
                ["OrganizationDetails.Vat"],
            ),
        ],
    )
    async def test_missing_parts_are_listed_one_error_each(
        self,
        fake: FakeClearTax,
        session: aiohttp.ClientSession,
        payload: dict[str, Any],
        paths: list[str],
    ) -> None:
        answer = await register(session, fake, payload)
        assert answer.status == 400
        errors = answer.json()["ErrorList"]
        assert [e["Path"] for e in errors] == paths
        assert {e["ErrorCode"] for e in errors} == {"6002"}

    async def test_a_body_that_is_not_a_json_object_is_400(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        for data in (b"[1]", b"{"):
            answer = await call(session, fake, "POST", REGISTER, data=data)
            assert answer.status == 400
            assert answer.json()["ErrorList"][0]["ErrorMessage"].startswith("Request body")

    async def test_an_organization_vat_other_than_the_header_is_400_and_keeps_the_otp(
        self, session: aiohttp.ClientSession
    ) -> None:
        other = "311111111111113"
        async with FakeClearTax(vats=(VAT, other)) as fake:
            otp = fake.issue_otp()
            answer = await register(session, fake, body(otp=otp, vat=other))
            assert the_error(answer) == ("6002", "OrganizationDetails.Vat")
            assert "does not match" in answer.json()["ErrorList"][0]["ErrorMessage"]
            assert (await register(session, fake, body(otp=otp))).status == 200

    async def test_a_spent_otp_is_invalid_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        otp = fake.issue_otp()
        assert (await register(session, fake, body(otp=otp))).status == 200
        answer = await register(session, fake, body(otp=otp, EgsSerialNumber="1-A|2-B|3-C"))
        assert answer.json() == INVALID_OTP
        device = fake.add_device()
        assert (await renew(session, fake, device, otp)).json() == INVALID_OTP

    async def test_an_otp_spent_by_a_renewal_is_refused(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        otp = fake.issue_otp()
        assert (await renew(session, fake, fake.add_device(), otp)).status == 200
        assert (await register(session, fake, body(otp=otp))).json() == INVALID_OTP

    async def test_unknown_and_expired_otps_are_refused_and_nothing_is_created(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        expired = fake.issue_otp(ttl=0.0)
        answer = await register(session, fake, body(otp=expired))
        assert answer.json()["ErrorList"][0]["ErrorMessage"] == "OTP has expired"
        assert (await register(session, fake, body(otp="000000"))).json() == INVALID_OTP
        with pytest.raises(KeyError):
            fake.device_by_serial(SERIAL)

    async def test_a_second_register_of_the_serial_is_400_6002_and_keeps_the_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first = (await register(session, fake, body(otp=fake.issue_otp()))).json()["DeviceId"]
        otp = fake.issue_otp()
        answer = await register(session, fake, body(otp=otp))
        assert the_error(answer) == ("6002", "DeviceDetails.EgsSerialNumber")
        assert answer.json()["ErrorList"][0]["ErrorMessage"] == (
            "Device already registered for the given EgsSerialNumber"
        )
        assert fake.device_by_serial(SERIAL).device_id == first
        fresh = body(otp=otp, EgsSerialNumber="1-ClearPOS|2-Model7|3-SN0002")
        assert (await register(session, fake, fresh)).status == 200

    async def test_the_same_serial_under_another_vat_is_another_device(
        self, session: aiohttp.ClientSession
    ) -> None:
        other = "311111111111113"
        async with FakeClearTax(vats=(VAT, other)) as fake:
            mine = await register(session, fake, body(otp=fake.issue_otp()))
            theirs = await register(
                session,
                fake,
                body(otp=fake.issue_otp(vat=other), vat=other),
                headers={"x-cleartax-auth-token": fake.token, "vat": other},
            )
            assert mine.status == theirs.status == 200
            assert fake.device_by_serial(SERIAL, vat=other).device_id == theirs.json()["DeviceId"]
            assert mine.json()["DeviceId"] != theirs.json()["DeviceId"]

    async def test_concurrent_registers_with_one_otp_perform_exactly_once(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(latency=0.02) as fake:
            otp = fake.issue_otp()
            serials = [f"1-M|2-X|3-S{n}" for n in range(4)]
            answers = await asyncio.gather(
                *(register(session, fake, body(otp=otp, EgsSerialNumber=s)) for s in serials)
            )
            assert sorted(a.status for a in answers) == [200, 400, 400, 400]
            assert sum(len(entries) for entries in fake.ledger.values()) == 1

    async def test_the_sandbox_sample_otp_registers_devices(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(sandbox_otp=True) as fake:
            assert (await register(session, fake, body(otp="123345"))).status == 200


class TestGenerateDeviceId:
    async def test_the_first_call_creates_a_device_without_pcsid(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        answer = await generate_csr(session, fake, body())
        assert answer.status == 200
        device_id = answer.json()["DeviceId"]
        assert answer.json() == {"Status": "GENERATED", "DeviceId": device_id, "ErrorList": []}
        view = fake.device(device_id)
        assert (view.has_pcsid, view.created_by, view.generations) == (False, "generate_csr", 0)
        assert fake.ledger == {}  # no OTP, nothing performed in the ledger's sense
        assert (await generate(session, fake, device_id, fake.issue_otp())).status == 200

    async def test_a_repeat_answers_200_with_the_existing_id_and_a_warning(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first = (await generate_csr(session, fake, body())).json()["DeviceId"]
        answer = await generate_csr(session, fake, body(CommonName="Till 1 again"))
        assert answer.status == 200
        assert answer.json() == {
            "Status": "GENERATED",
            "DeviceId": first,
            "ErrorList": [
                {
                    "ErrorCode": "6002",
                    "ErrorMessage": "Device already exists for the given EgsSerialNumber",
                    "ErrorSource": "CLEARTAX",
                    "Path": "DeviceDetails.EgsSerialNumber",
                }
            ],
        }
        assert fake.device(first).common_name == "Till 1"
        assert len(fake.requests) == 2

    async def test_a_device_id_generated_first_cannot_then_be_registered(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        first = (await generate_csr(session, fake, body())).json()["DeviceId"]
        answer = await register(session, fake, body(otp=fake.issue_otp()))
        assert the_error(answer) == ("6002", "DeviceDetails.EgsSerialNumber")
        again = await generate_csr(session, fake, body())
        assert again.json()["DeviceId"] == first

    async def test_validation_and_vat_mismatch_are_400_with_paths(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(vats=(VAT, "311111111111113")) as fake:
            answer = await generate_csr(session, fake, body(EgsSerialNumber="serial-1"))
            assert the_error(answer) == ("6002", "DeviceDetails.EgsSerialNumber")
            answer = await generate_csr(session, fake, body(vat="311111111111113"))
            assert the_error(answer) == ("6002", "OrganizationDetails.Vat")
            assert not any(r.device_id for r in fake.requests)

    async def test_an_otp_is_not_needed_and_ignored(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        otp = fake.issue_otp()
        assert (await generate_csr(session, fake, body(otp=otp))).status == 200
        assert (
            await register(session, fake, body(otp=otp, EgsSerialNumber="1-a|2-b|3-c"))
        ).status == 200


class TestObservability:
    async def test_counts_and_log_name_the_new_endpoints_and_the_device_made(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        otp = fake.issue_otp()
        registered = (await register(session, fake, body(otp=otp))).json()["DeviceId"]
        other = body(EgsSerialNumber="1-a|2-b|3-c")
        generated = (await generate_csr(session, fake, other)).json()["DeviceId"]
        await generate_csr(session, fake, other)
        assert fake.count(endpoint="register") == 1
        assert fake.count(endpoint="generate_csr") == 2
        assert fake.count(endpoint="generate_csr", device_id=generated) == 2
        assert fake.count(device_id=registered) == 1
        assert [r.endpoint for r in fake.requests] == ["register", "generate_csr", "generate_csr"]
        assert [r.status for r in fake.requests] == [200, 200, 200]
        assert otp not in repr(fake.requests)
        assert otp not in repr(fake.ledger[registered])
        assert len(fake.request_times("register")) == 1

    async def test_the_request_log_of_a_refused_register_has_no_otp(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        await register(session, fake, body(otp="987654"))
        [record] = fake.requests
        assert (record.endpoint, record.status, record.device_id) == ("register", 400, None)
        assert "987654" not in repr(record)


class TestFaults:
    async def test_drop_after_on_register_performs_once_and_answers_nothing(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        fake.inject("register", "drop_after")
        otp = fake.issue_otp()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await register(session, fake, body(otp=otp))
        device = fake.device_by_serial(SERIAL)
        assert [e.endpoint for e in fake.ledger[device.device_id]] == ["register"]
        assert fake.requests[0].fault == "drop_after"
        # A resend of the spent OTP is refused: the ledger keeps the single use checkable.
        assert (await register(session, fake, body(otp=otp))).json() == INVALID_OTP

    async def test_drop_before_and_rate_limit_on_register_perform_nothing(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        fake.inject("register", "rate_limit")
        fake.inject("register", "drop_before")
        otp = fake.issue_otp()
        answer = await register(session, fake, body(otp=otp))
        assert (answer.status, answer.headers["Retry-After"]) == (429, "1")
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await register(session, fake, body(otp=otp))
        assert fake.ledger == {}
        assert (await register(session, fake, body(otp=otp))).status == 200

    async def test_generate_csr_takes_faults_from_the_plan(
        self, session: aiohttp.ClientSession
    ) -> None:
        plan = FaultPlan(generate_csr=EndpointFaults(server_error=1.0))
        async with FakeClearTax(faults=plan) as fake:
            answer = await generate_csr(session, fake, body())
            assert answer.status in (500, 502, 503, 504)
            assert fake.requests[0].fault == "server_error"
            with pytest.raises(KeyError):
                fake.device_by_serial(SERIAL)

    async def test_uniform_plans_and_latency_cover_the_new_endpoints(
        self, session: aiohttp.ClientSession
    ) -> None:
        plan = FaultPlan.uniform(extra_fields=1.0)
        assert plan.register == plan.generate_csr == plan.renew
        async with FakeClearTax(faults=plan, latency={"register": 0.0}) as fake:
            document = (await generate_csr(session, fake, body())).json()
            assert "XSchemaRevision" in document
            assert document["Status"] == "GENERATED"

    async def test_malformed_on_generate_csr_still_creates_the_device(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        fake.inject("generate_csr", "malformed", body="{")
        answer = await generate_csr(session, fake, body())
        assert (answer.status, answer.text) == (200, "{")
        view = fake.device_by_serial(SERIAL)
        repeat = (await generate_csr(session, fake, body())).json()
        assert repeat["DeviceId"] == view.device_id
