"""The fake's public names, lifecycle, runner, HTTPS and concurrency figures (``_fake``)."""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

import aiohttp
import aiohttp.web
import pytest
import trustme

from fake_server._http import (
    eventually,
    poll,
    renew,
)
from pcsid_async.testing import (
    API_PREFIX,
    FakeClearTax,
    run_fake_server,
)


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
            if module.name == "pytest_plugin.py":
                continue  # the pytest fixtures join the fake and the client on purpose
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

    async def test_the_app_vats_and_fault_plan_properties(self) -> None:
        async with FakeClearTax(vats=("300000000000003", "311111111111113")) as fake:
            assert isinstance(fake.app, aiohttp.web.Application)
            assert fake.vats == ("300000000000003", "311111111111113")
            assert fake.vat == "300000000000003"
            with pytest.raises(TypeError, match="FaultPlan"):
                fake.faults = {"renew": 0.5}  # type: ignore[assignment]
            assert fake.faults is None

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
