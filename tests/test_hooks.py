"""on_request / on_response event hooks: what they see, what they never see, and failures."""

from __future__ import annotations

import logging

import pytest
from _scripted import TOKEN, ScriptedServer, drop, quick_retry, reply
from conftest import ClientFactory

from pcsid_async import (
    APIConnectionError,
    BadRequestError,
    DeviceDetails,
    InternalServerError,
    OrganizationDetails,
    RequestEvent,
    ResponseEvent,
)
from pcsid_async._hooks import describe
from pcsid_async.testing import FakeClearTax

ACTIVITY = "628f37b61ed71a6638b848e4"
SUCCEEDED = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "SUCCEEDED"}


class Recorder:
    """Both hooks, keeping every event."""

    def __init__(self) -> None:
        self.events: list[RequestEvent | ResponseEvent] = []

    def on_request(self, event: RequestEvent) -> None:
        self.events.append(event)

    def on_response(self, event: ResponseEvent) -> None:
        self.events.append(event)

    @property
    def responses(self) -> list[ResponseEvent]:
        return [e for e in self.events if isinstance(e, ResponseEvent)]


class TestEvents:
    async def test_each_attempt_is_described_with_status_attempt_and_error(
        self, make_client: ClientFactory
    ) -> None:
        recorder = Recorder()
        steps = (reply(503), reply(200, json=SUCCEEDED, headers={"x-request-id": "req-7"}))
        async with ScriptedServer(*steps) as server:
            client = make_client(
                server.url, on_request=recorder.on_request, on_response=recorder.on_response
            )
            await client.get_status(ACTIVITY)
        template = "/onboarding/{activity_id}/pcsid-status"
        first, failed, second, answered = recorder.events
        assert first == RequestEvent("get_status", "GET", template, 1)
        assert isinstance(failed, ResponseEvent)
        assert (failed.attempt, failed.status_code, failed.error_type) == (
            1,
            503,
            InternalServerError,
        )
        assert second == RequestEvent("get_status", "GET", template, 2)
        assert isinstance(answered, ResponseEvent)
        assert (answered.status_code, answered.request_id, answered.error_type) == (
            200,
            "req-7",
            None,
        )
        assert 0 <= answered.elapsed < 5

    async def test_no_answer_is_an_event_without_a_status(self, make_client: ClientFactory) -> None:
        recorder = Recorder()
        async with ScriptedServer(drop()) as server:
            client = make_client(
                server.url,
                on_response=recorder.on_response,
                retry=quick_retry(max_attempts=1),
            )
            with pytest.raises(APIConnectionError):
                await client.renew("d-1", "123456")
        [event] = recorder.responses
        assert event.endpoint == "renew"
        assert event.status_code is None
        assert event.error_type is not None
        assert issubclass(event.error_type, APIConnectionError)

    async def test_no_event_ever_holds_the_token_or_the_otp(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        recorder = Recorder()
        client = make_client(
            fake.url, on_request=recorder.on_request, on_response=recorder.on_response
        )
        device, otp = fake.add_device(), fake.issue_otp()
        await client.renew(device, otp)
        with pytest.raises(BadRequestError):
            await client.renew(device, otp)  # spent: the error echoes nothing into events
        reg_otp = fake.issue_otp()
        details = DeviceDetails("EGS1", "1-Acme|2-M1|3-S9", "Riyadh", "Retail")
        registered = await client.register_device(details, OrganizationDetails(fake.vat), reg_otp)
        assert registered.activity_id is not None
        await client.await_activity(registered.activity_id, interval=0.01, max_interval=0.02)
        await client.generate_device_id(details, OrganizationDetails(fake.vat))
        endpoints = {e.endpoint for e in recorder.events}
        assert endpoints == {"renew", "register_device", "get_status", "generate_device_id"}
        text = repr(recorder.events)
        for secret in (TOKEN, otp, reg_otp, registered.activity_id):
            assert secret not in text

    async def test_one_hook_alone_is_enough(self, make_client: ClientFactory) -> None:
        recorder = Recorder()
        async with ScriptedServer(reply(200, json=SUCCEEDED)) as server:
            client = make_client(server.url, on_request=recorder.on_request)
            await client.get_status(ACTIVITY)
            await client.get_status(ACTIVITY)
        assert [type(e) for e in recorder.events] == [RequestEvent, RequestEvent]


class TestFailingHooks:
    async def test_a_raising_hook_is_logged_and_the_call_goes_on(
        self, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(event: object) -> None:
            raise RuntimeError("metrics backend down")

        async with ScriptedServer(reply(200, json=SUCCEEDED)) as server:
            client = make_client(server.url, on_request=broken, on_response=broken)
            with caplog.at_level(logging.WARNING, logger="pcsid_async"):
                status = await client.get_status(ACTIVITY)
        assert status.state.value == "SUCCEEDED"
        hook_records = [r for r in caplog.records if "hook" in r.getMessage()]
        assert len(hook_records) == 2
        assert all(r.exc_info is not None for r in hook_records)
        assert all(TOKEN not in r.getMessage() for r in caplog.records)

    def test_a_hook_must_be_callable(self, make_client: ClientFactory) -> None:
        with pytest.raises(ValueError, match="on_response"):
            make_client("http://127.0.0.1:9", on_response="print")


class TestDescribe:
    @pytest.mark.parametrize(
        ("path", "endpoint", "template"),
        [
            ("/onboarding/renew-pcsid", "renew", "/onboarding/renew-pcsid"),
            (
                "/onboarding/abc/pcsid-status",
                "get_status",
                "/onboarding/{activity_id}/pcsid-status",
            ),
            ("/somewhere/else?x=secret", "other", "/..."),
        ],
    )
    def test_paths_map_to_endpoint_and_template(
        self, path: str, endpoint: str, template: str
    ) -> None:
        """An unknown path is never echoed: it could hold anything."""
        assert describe(path) == (endpoint, template)
