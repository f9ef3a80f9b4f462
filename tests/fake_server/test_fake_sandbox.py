"""The sandbox-spirit mode: the sample OTP ``123345`` once per device, and the quickstart."""

from __future__ import annotations

import asyncio

import aiohttp

from fake_server._http import INVALID_OTP, eventually, generate, renew
from pcsid_async import PcsidClient
from pcsid_async.testing import FakeClearTax, run_fake_server

SAMPLE = "123345"


class TestSandboxOtp:
    async def test_the_sample_otp_works_once_per_device(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(sandbox_otp=True, activity_polls=1) as fake:
            first, second = fake.add_devices(2)
            assert (await renew(session, fake, first, SAMPLE)).status == 200
            again = await renew(session, fake, first, SAMPLE)
            assert (again.status, again.json()) == (400, INVALID_OTP)
            assert (await renew(session, fake, second, SAMPLE)).status == 200
            assert [entry.otp for entry in fake.ledger[first]] == [SAMPLE]
            assert fake.device(first).renewals == 1

    async def test_a_generation_spends_it_for_that_device_and_a_refusal_does_not(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(sandbox_otp=True, activity_polls=1) as fake:
            device = fake.add_device(has_pcsid=False)
            assert (await renew(session, fake, device, SAMPLE)).status == 400  # 6002: no PCSID
            started = await generate(session, fake, device, SAMPLE)
            assert started.status == 200
            fake.complete_activity(started.json()["PcsidGenerationActivityId"])
            assert fake.device(device).has_pcsid is True
            answer = await renew(session, fake, device, SAMPLE)
            assert answer.json() == INVALID_OTP

    async def test_issued_otps_keep_their_rules_beside_the_sample(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(sandbox_otp=True) as fake:
            device = fake.add_device()
            otp = fake.issue_otp()
            assert (await renew(session, fake, device, otp)).status == 200
            assert (await renew(session, fake, device, otp)).json()["ErrorList"] == INVALID_OTP[
                "ErrorList"
            ]
            assert (await renew(session, fake, device, SAMPLE)).status == 200
            unknown = await renew(session, fake, device, "000000")
            assert unknown.json() == INVALID_OTP

    async def test_the_sample_is_refused_for_another_vats_device_like_any_otp(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(
            sandbox_otp=True, vats=("300000000000003", "311111111111113")
        ) as fake:
            device = fake.add_device(vat="311111111111113")
            answer = await renew(session, fake, device, SAMPLE)  # sent with the default VAT
            assert answer.json()["ErrorList"][0]["ErrorCode"] == "6003"
            assert device not in fake.ledger


class TestSampleCredentials:
    async def test_they_name_a_device_to_renew_and_one_to_generate_for(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with FakeClearTax(sandbox_otp=True) as fake:
            broken = fake.add_device(renew_error=("8001", "planted"))
            renewable = fake.add_device()
            onboard = fake.add_device(has_pcsid=False)
            credentials = fake.sample_credentials()
            assert (credentials.renew_device, credentials.generate_device) == (renewable, onboard)
            assert credentials.sandbox_otp == SAMPLE
            assert SAMPLE not in repr(credentials)
            assert broken in dict(credentials.devices)
            assert (await generate(session, fake, onboard, SAMPLE)).status == 200
            assert fake.sample_credentials().generate_device is None  # generation in progress

    async def test_without_the_mode_there_is_no_sample_otp_and_none_when_no_device_fits(
        self,
    ) -> None:
        async with FakeClearTax() as fake:
            credentials = fake.sample_credentials()
            assert credentials.sandbox_otp is None
            assert (credentials.renew_device, credentials.generate_device) == (None, None)


class TestQuickstart:
    async def test_the_readme_quickstart_runs_against_the_fake(self) -> None:
        async with FakeClearTax(sandbox_otp=True, activity_polls=2) as fake:
            to_renew, to_generate = fake.add_quickstart_devices()
            assert fake.add_quickstart_devices() == (to_renew, to_generate)  # idempotent
            async with PcsidClient(fake.token, fake.vat, base_url=fake.url) as client:
                renewal = await client.renew(to_renew, SAMPLE)
                assert renewal.status.value == "GENERATED"
                started = await client.generate_csid(to_generate, SAMPLE)
                status = await client.get_status(started.activity_id or "")
                assert status.state.value == "IN_PROGRESS"
                final = await client.await_activity(started.activity_id or "", interval=0.001)
                assert final.pcsid_generated
                assert final.failed_checks == ()
            assert fake.device(to_generate).has_pcsid is True

    async def test_run_fake_server_serves_the_quickstart_in_sandbox_mode(self) -> None:
        started: asyncio.Queue[FakeClearTax] = asyncio.Queue()
        task = asyncio.ensure_future(
            run_fake_server(
                devices=1, devices_without_pcsid=1, sandbox_otp=True, ready=started.put_nowait
            )
        )
        fake = await asyncio.wait_for(started.get(), timeout=5)
        credentials = fake.sample_credentials()
        assert len(credentials.devices) == 4  # 1 + 1 + the quickstart's two
        assert fake.device("3f2c1d6e-8a4b-4c1e-9f0a-2b7d5e6c8a91").has_pcsid is False
        assert fake.device("eb645fd8-ee2e-4bdd-82b6-b69c91c9178d").has_pcsid is True
        assert credentials.generate_device is not None
        assert fake.device(credentials.generate_device).has_pcsid is False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await eventually(task.done)
