"""The request log, counters and the ledger (``_observe``)."""

from __future__ import annotations

import aiohttp
import attrs
import pytest

from fake_server._http import (
    RENEW,
    call,
    generate,
    poll,
    renew,
)
from pcsid_async.testing import (
    API_PREFIX,
    FakeClearTax,
)


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
