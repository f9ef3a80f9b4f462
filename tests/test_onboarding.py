"""register_device, generate_device_id and request_id/status_code on results, over real HTTP."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from _scripted import TOKEN, VAT, ScriptedServer, reply
from conftest import ClientFactory

from pcsid_async import (
    ActivityState,
    APIConnectionError,
    BadRequestError,
    DeviceDetails,
    DeviceIdResult,
    GenerationStatus,
    InvalidArgumentError,
    OrganizationDetails,
    PcsidClient,
)
from pcsid_async._onboarding import decode_device_id, decode_registration
from pcsid_async.testing import FakeClearTax

SERIAL = "1-Acme|2-Model7|3-SN0001"
ACTIVITY = "628f37b61ed71a6638b848e4"


def details(serial: str = SERIAL, **overrides: Any) -> DeviceDetails:
    fields: dict[str, Any] = {
        "common_name": "EGS-Till-1",
        "egs_serial_number": serial,
        "location": "King Fahd Rd, Riyadh",
        "industry": "Retail",
    }
    fields.update(overrides)
    return DeviceDetails(**fields)


class TestRegisterDevice:
    async def test_registers_the_device_and_its_activity_finishes(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        result = await client.register_device(details(), OrganizationDetails(VAT), fake.issue_otp())
        assert result.ok
        assert result.status is GenerationStatus.GENERATED
        assert result.status_code == 200
        assert result.device_id == fake.device_by_serial(SERIAL).device_id
        assert result.activity_id is not None
        status = await client.await_activity(result.activity_id, interval=0.01, max_interval=0.02)
        assert status.state is ActivityState.SUCCEEDED

    async def test_a_serial_registered_twice_is_refused(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        await client.register_device(details(), OrganizationDetails(VAT), fake.issue_otp())
        with pytest.raises(BadRequestError) as caught:
            await client.register_device(details(), OrganizationDetails(VAT), fake.issue_otp())
        assert caught.value.error_codes == ("6002",)

    async def test_a_spent_otp_is_refused_and_never_quoted(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        otp = fake.issue_otp()
        await client.register_device(details(), OrganizationDetails(VAT), otp)
        with pytest.raises(BadRequestError) as caught:
            await client.register_device(
                details("1-Acme|2-M|3-Other"), OrganizationDetails(VAT), otp
            )
        assert caught.value.error_codes == ("Invalid-OTP",)
        assert otp not in str(caught.value) + repr(caught.value)

    async def test_the_otp_post_is_never_resent_once_it_may_have_arrived(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("register", "drop_after")  # performed, the answer lost
        with pytest.raises(APIConnectionError) as caught:
            await client.register_device(details(), OrganizationDetails(VAT), fake.issue_otp())
        assert caught.value.may_have_reached_server
        assert fake.count("register") == 1

    async def test_a_vat_other_than_the_header_is_refused_by_the_server(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        with pytest.raises(BadRequestError) as caught:
            await client.register_device(
                details(), OrganizationDetails("399999999999993"), fake.issue_otp()
            )
        assert caught.value.errors[0].path == "OrganizationDetails.Vat"

    async def test_the_body_uses_the_wire_names(self, make_client: ClientFactory) -> None:
        answer = {"Status": "GENERATED", "DeviceId": "d-9", "PcsidGenerationActivityId": ACTIVITY}
        async with ScriptedServer(reply(200, json=answer)) as server:
            client = make_client(server.url)
            organization = OrganizationDetails(VAT, extra={"RegisteredName": "Acme LLC"})
            await client.register_device(details(invoice_type="1000"), organization, "123456")
        [seen] = server.requests
        assert seen.path.endswith("/onboarding/register-device")
        assert json.loads(seen.body) == {
            "DeviceDetails": {
                "CommonName": "EGS-Till-1",
                "EgsSerialNumber": SERIAL,
                "Location": "King Fahd Rd, Riyadh",
                "Industry": "Retail",
                "InvoiceType": "1000",
            },
            "OrganizationDetails": {"Vat": VAT, "RegisteredName": "Acme LLC"},
            "Otp": "123456",
        }


class TestGenerateDeviceId:
    async def test_a_repeat_returns_the_same_id_with_a_warning(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        first = await client.generate_device_id(details(), OrganizationDetails(VAT))
        again = await client.generate_device_id(details(), OrganizationDetails(VAT))
        assert first.ok
        assert again.ok
        assert (first.already_existed, first.warnings) == (False, ())
        assert again.device_id == first.device_id == fake.device_by_serial(SERIAL).device_id
        assert again.already_existed
        assert [w.code for w in again.warnings] == ["6002"]
        assert again.errors == ()

    async def test_it_is_retried_like_a_get(self, fake: FakeClearTax, client: PcsidClient) -> None:
        fake.inject("generate_csr", "server_error", status=503)
        result = await client.generate_device_id(details(), OrganizationDetails(VAT))
        assert result.ok
        assert fake.count("generate_csr") == 2

    def test_errors_of_a_failed_answer_are_scrubbed_of_secrets(self) -> None:
        body = {"Status": "FAILED", "ErrorList": [{"ErrorCode": "4040", "ErrorMessage": TOKEN}]}
        result = decode_device_id(200, {}, json.dumps(body).encode(), secrets=(TOKEN,))
        assert [e.code for e in result.errors] == ["4040"]
        assert TOKEN not in repr(result)

    def test_an_answer_without_a_device_id_keeps_its_errors(self) -> None:
        body = {"Status": "FAILED", "ErrorList": [{"ErrorCode": "4040", "ErrorMessage": "x"}]}
        result = decode_device_id(200, {}, json.dumps(body).encode())
        assert not result.ok
        assert [e.code for e in result.errors] == ["4040"]
        assert result.warnings == ()


class TestInputChecks:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"egs_serial_number": "1-Acme|2-M|3-"},
            {"egs_serial_number": "1-Acmé|2-M|3-S"},
            {"egs_serial_number": "Acme|Model|SN"},
            {"common_name": "  "},
            {"location": "Riyadh\x00"},
            {"industry": 7},
            {"invoice_type": "0000"},
            {"invoice_type": "1111"},
            {"invoice_type": "2100"},
        ],
    )
    def test_bad_device_details_are_refused(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(InvalidArgumentError):
            details(**overrides)

    @pytest.mark.parametrize("vat", ["30000000000000", "3000000000000031", "30000000000000x", 3])
    def test_a_vat_must_be_15_digits(self, vat: Any) -> None:
        with pytest.raises(InvalidArgumentError):
            OrganizationDetails(vat)

    @pytest.mark.parametrize("extra", [{"Name": 1}, {"Vat": VAT}])
    def test_extra_fields_are_text_and_never_the_vat(self, extra: Any) -> None:
        with pytest.raises(InvalidArgumentError):
            OrganizationDetails(VAT, extra=extra)

    async def test_nothing_is_sent_for_a_bad_argument(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        org = OrganizationDetails(VAT)
        with pytest.raises(InvalidArgumentError):
            await client.register_device({"CommonName": "x"}, org, "123456")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await client.generate_device_id(details(), VAT)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await client.register_device(details(), org, "12 34")
        assert fake.count() == 0


class TestRequestId:
    HEADERS: ClassVar[dict[str, str]] = {"x-request-id": "req-42"}

    @pytest.mark.parametrize(
        ("call", "answer"),
        [
            ("renew", {"Status": "GENERATED", "DeviceId": "d-1"}),
            ("generate_csid", {"Status": "GENERATED", "DeviceId": "d-1"}),
            ("get_status", {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "IN_PROGRESS"}),
            ("register_device", {"Status": "GENERATED", "DeviceId": "d-1"}),
            ("generate_device_id", {"Status": "GENERATED", "DeviceId": "d-1"}),
        ],
    )
    async def test_every_result_carries_the_request_id_and_status(
        self, make_client: ClientFactory, call: str, answer: dict[str, Any]
    ) -> None:
        args: tuple[Any, ...] = {
            "renew": ("d-1", "123456"),
            "generate_csid": ("d-1", "123456"),
            "get_status": (ACTIVITY,),
            "register_device": (details(), OrganizationDetails(VAT), "123456"),
            "generate_device_id": (details(), OrganizationDetails(VAT)),
        }[call]
        async with ScriptedServer(reply(200, json=answer, headers=self.HEADERS)) as server:
            result = await getattr(make_client(server.url), call)(*args)
        assert (result.request_id, result.status_code) == ("req-42", 200)
        assert "req-42" in repr(result)

    async def test_a_failed_activity_keeps_its_500(self, make_client: ClientFactory) -> None:
        body = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "FAILED"}
        async with ScriptedServer(reply(500, json=body, headers=self.HEADERS)) as server:
            status = await make_client(server.url).get_status(ACTIVITY)
        assert (status.state, status.status_code, status.request_id) == (
            ActivityState.FAILED,
            500,
            "req-42",
        )

    def test_body_keys_never_fill_the_envelope(self) -> None:
        """A body's RequestId/StatusCode/Warnings are unknown keys: ignored, never decoded."""
        body = {"Status": "GENERATED", "DeviceId": "d", "RequestId": [], "StatusCode": "x"}
        raw = json.dumps({**body, "Warnings": 5}).encode()
        registered = decode_registration(201, {}, raw)
        assert (registered.request_id, registered.status_code) == (None, 201)
        device = decode_device_id(200, {}, raw)
        assert (device.request_id, device.warnings) == (None, ())

    def test_equality_ignores_the_envelope(self) -> None:
        one = DeviceIdResult(GenerationStatus.GENERATED, "d", request_id="a", status_code=200)
        two = DeviceIdResult(GenerationStatus.GENERATED, "d", request_id="b", status_code=201)
        assert one == two
        assert hash(one) == hash(two)

    async def test_registration_errors_never_echo_the_otp(self, make_client: ClientFactory) -> None:
        otp = "OTP-SECRET-774411"
        errors = [{"ErrorCode": "8001", "ErrorMessage": f"otp {otp} rejected"}]
        async with ScriptedServer(reply(200, json={"Status": "FAILED", "ErrorList": errors})) as s:
            result = await make_client(s.url).register_device(
                details(), OrganizationDetails(VAT), otp
            )
        assert not result.ok
        assert otp not in repr(result)
        assert TOKEN not in repr(result)
