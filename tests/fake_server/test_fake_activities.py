"""generate-csid, pcsid-status and direct activities (``_endpoints``, ``_activities``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from fake_server._http import (
    ISO_MILLIS,
    OBJECT_ID,
    generate,
    poll,
    rejection,
    renew,
)
from pcsid_async.testing import (
    CHECK_NAMES,
    FakeClearTax,
)


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

    async def test_a_second_generate_after_success_is_the_providers_6002_body(
        self, fake: FakeClearTax, session: aiohttp.ClientSession
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        started = await generate(session, fake, device, fake.issue_otp())
        fake.complete_activity(started.json()["PcsidGenerationActivityId"])
        answer = await generate(session, fake, device, fake.issue_otp())
        assert answer.status == 400
        assert answer.json() == rejection(
            "6002", "Production CSID already generated for device", "CLEARTAX", "DeviceId"
        )
        assert fake.device(device).generations == 1

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
