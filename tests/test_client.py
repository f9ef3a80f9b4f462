"""PcsidClient over loopback: the three calls, typed errors, validation, hygiene, sessions."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import itertools
import json
import logging
import re
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from _scripted import (
    OTHER_VAT,
    TOKEN,
    VAT,
    ScriptedServer,
    drop,
    quick_retry,
    redirect,
    reply,
    sleep_then,
)
from aiohttp import web
from conftest import ClientFactory
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from pcsid_async import (
    ActivityState,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ComplianceCheck,
    GenerationStatus,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    PcsidClient,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
)
from pcsid_async._client import check_activity_id
from pcsid_async.testing import FakeClearTax

NO_RETRY = RetryPolicy.no_retries()
ACTIVITY = "628f37b61ed71a6638b848e4"
DEVICE = "eb645fd8-ee2e-4bdd-82b6-b69c91c9178d"
OTP = "OTP-7f3e91"
GENERATED = {"Status": "GENERATED", "DeviceId": DEVICE, "ErrorList": []}


class TestRenew:
    async def test_renewal_returns_the_generated_result(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device()
        result = await client.renew(device, fake.issue_otp())
        assert result.status is GenerationStatus.GENERATED
        assert result.ok
        assert result.device_id == device
        assert result.errors == ()
        assert len(fake.ledger[device]) == 1

    async def test_renew_posts_device_and_otp_with_the_headers(
        self, make_client: ClientFactory
    ) -> None:
        async with ScriptedServer(reply(200, json=GENERATED)) as server:
            await make_client(server.url).renew(DEVICE, OTP)
        (seen,) = server.requests
        assert (seen.method, seen.path) == ("POST", "/api/onboarding/renew-pcsid")
        assert json.loads(seen.body) == {"DeviceId": DEVICE, "Otp": OTP}
        assert seen.headers["x-cleartax-auth-token"] == TOKEN
        assert seen.headers["vat"] == VAT
        assert seen.headers["Content-Type"] == "application/json"

    async def test_a_spent_otp_is_a_bad_request(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        await client.renew(device, otp)
        with pytest.raises(BadRequestError) as caught:
            await client.renew(device, otp)
        assert caught.value.error_codes == ("Invalid-OTP",)

    async def test_a_device_without_pcsid_is_a_bad_request(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        with pytest.raises(BadRequestError) as caught:
            await client.renew(device, fake.issue_otp())
        assert caught.value.error_codes == ("6002",)
        assert caught.value.errors[0].path == "DeviceId"

    async def test_renewal_that_starts_an_activity_carries_its_id(
        self, make_client: ClientFactory
    ) -> None:
        async with FakeClearTax(token=TOKEN, vats=[VAT], renew_starts_activity=True) as fake:
            device = fake.add_device()
            result = await make_client(fake.url).renew(device, fake.issue_otp())
        assert result.activity_id is not None
        assert fake.ledger[device][0].activity_id == result.activity_id


class TestGenerateCsid:
    async def test_generation_carries_the_activity_get_status_reports(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        result = await client.generate_csid(device, fake.issue_otp())
        assert result.ok
        assert result.device_id == device
        assert result.activity_id is not None
        status = await client.get_status(result.activity_id)
        assert status.activity_id == result.activity_id
        assert status.state is ActivityState.SUCCEEDED

    async def test_a_second_generation_is_a_bad_request_6002(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device(has_pcsid=False)
        await client.generate_csid(device, fake.issue_otp())
        with pytest.raises(BadRequestError) as caught:
            await client.generate_csid(device, fake.issue_otp())
        assert caught.value.error_codes == ("6002",)

    async def test_generate_posts_to_generate_csid(self, make_client: ClientFactory) -> None:
        body = {**GENERATED, "PcsidGenerationActivityId": ACTIVITY}
        async with ScriptedServer(reply(200, json=body)) as server:
            result = await make_client(server.url).generate_csid(DEVICE, OTP)
        assert result.activity_id == ACTIVITY
        (seen,) = server.requests
        assert (seen.method, seen.path) == ("POST", "/api/onboarding/generate-csid")
        assert json.loads(seen.body) == {"DeviceId": DEVICE, "Otp": OTP}


class TestGetStatus:
    async def test_in_progress_then_succeeded(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(polls=2)
        first = await client.get_status(activity)
        assert first.state is ActivityState.IN_PROGRESS
        assert not first.is_terminal
        assert first.pcsid_generated is None
        final = await client.get_status(activity)
        assert final.state is ActivityState.SUCCEEDED
        assert final.succeeded
        assert final.pcsid_generated is GenerationStatus.GENERATED
        assert set(final.checks) == set(ComplianceCheck)
        assert (final.total_count, final.success_count, final.failure_count) == (6, 6, 0)
        assert final.completed_at is not None
        assert final.completed_at.tzinfo is dt.timezone.utc

    async def test_failed_activity_sent_as_http_500_is_returned_as_failed(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        activity = fake.create_activity(failing_checks={"SimplifiedTaxInvoice": "bad qr, bad hash"})
        status = await client.get_status(activity)
        assert status.state is ActivityState.FAILED
        assert not status.succeeded
        assert status.checks[ComplianceCheck.SIMPLIFIED_TAX_INVOICE].messages == (
            "bad qr",
            "bad hash",
        )
        assert [r.status for r in fake.requests] == [500]

    async def test_500_without_an_activity_body_raises_internal_server_error(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        fake.inject("status", "server_error", status=500, body="<html>oops</html>")
        with pytest.raises(InternalServerError) as caught:
            await make_client(fake.url, retry=NO_RETRY).get_status(fake.create_activity())
        assert caught.value.body_excerpt == "<html>oops</html>"

    async def test_get_status_sends_a_bodyless_get_to_the_activity_path(
        self, make_client: ClientFactory
    ) -> None:
        body = {"ActivityType": "ZATCA_COMPLIANCE_INVOICE", "Status": "IN_PROGRESS"}
        async with ScriptedServer(reply(200, json=body)) as server:
            await make_client(server.url).get_status(ACTIVITY)
        (seen,) = server.requests
        assert (seen.method, seen.path) == ("GET", f"/api/onboarding/{ACTIVITY}/pcsid-status")
        assert seen.body == b""
        assert seen.headers["vat"] == VAT

    async def test_unknown_activity_is_a_bad_request(self, client: PcsidClient) -> None:
        with pytest.raises(BadRequestError) as caught:
            await client.get_status("000000000000000000000000")
        assert caught.value.error_codes == ("6003",)

    @pytest.mark.parametrize("fmt", ["iso", "epoch_s", "epoch_ms"])
    async def test_every_timestamp_format_is_aware_utc(
        self, make_client: ClientFactory, fmt: str
    ) -> None:
        async with FakeClearTax(token=TOKEN, vats=[VAT], timestamp_format=fmt) as fake:
            status = await make_client(fake.url).get_status(fake.create_activity())
        assert status.created_at is not None
        assert status.created_at.tzinfo is dt.timezone.utc
        assert abs(dt.datetime.now(dt.timezone.utc) - status.created_at) < dt.timedelta(hours=1)

    async def test_unknown_fields_in_the_answer_are_ignored(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("status", "extra_fields")
        status = await client.get_status(fake.create_activity())
        assert status.state is ActivityState.SUCCEEDED


class TestPerCallVat:
    async def test_vat_argument_overrides_the_default_for_that_call_only(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        other_device = fake.add_device(vat=OTHER_VAT)
        await client.renew(other_device, fake.issue_otp(vat=OTHER_VAT), vat=OTHER_VAT)
        device = fake.add_device()
        await client.renew(device, fake.issue_otp())
        assert [r.vat for r in fake.requests] == [OTHER_VAT, VAT]

    async def test_generate_and_get_status_take_a_vat(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        device = fake.add_device(vat=OTHER_VAT, has_pcsid=False)
        result = await client.generate_csid(device, fake.issue_otp(vat=OTHER_VAT), vat=OTHER_VAT)
        assert result.activity_id is not None
        status = await client.get_status(result.activity_id, vat=OTHER_VAT)
        assert status.state is ActivityState.SUCCEEDED
        assert {r.vat for r in fake.requests} == {OTHER_VAT}

    async def test_a_vat_the_user_is_not_admin_for_is_permission_denied(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        with pytest.raises(PermissionDeniedError) as caught:
            await client.get_status(fake.create_activity(), vat="399999999999993")
        assert caught.value.error_codes == ("5002",)


class TestStatusCodesOverTheWire:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, BadRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (409, APIStatusError),
            (422, APIStatusError),
            (429, RateLimitError),
            (500, InternalServerError),
            (501, InternalServerError),
            (502, InternalServerError),
            (503, InternalServerError),
            (504, InternalServerError),
        ],
    )
    async def test_status_maps_to_its_exception(
        self,
        fake: FakeClearTax,
        make_client: ClientFactory,
        status: int,
        cls: type[APIStatusError],
    ) -> None:
        fake.inject("renew", "http", status=status)
        with pytest.raises(APIStatusError) as caught:
            await make_client(fake.url, retry=NO_RETRY).renew(fake.add_device(), fake.issue_otp())
        assert type(caught.value) is cls
        assert caught.value.status_code == status

    async def test_a_wrong_token_is_an_authentication_error(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        client = make_client(fake.url, auth_token="not-the-token")
        with pytest.raises(AuthenticationError) as caught:
            await client.get_status(fake.create_activity())
        assert caught.value.error_codes == ("100401",)
        assert caught.value.errors[0].message == "Authentication Failed"

    @pytest.mark.parametrize(
        ("body", "codes"),
        [
            ({"Status": "FAILED", "ErrorList": [{"ErrorCode": "8001"}]}, ("8001",)),
            ({"ErrorCode": "100401", "ErrorMessage": "Authentication Failed"}, ("100401",)),
            ([{"ErrorCode": "6002"}, {"ErrorCode": "6003"}], ("6002", "6003")),
            ("<html><h1>502 Bad Gateway</h1></html>", ()),
            (b"", ()),
        ],
        ids=["error-list", "bare-object", "array", "html", "empty"],
    )
    async def test_each_error_body_shape_becomes_errors_and_an_excerpt(
        self, fake: FakeClearTax, make_client: ClientFactory, body: Any, codes: tuple[str, ...]
    ) -> None:
        fake.inject("renew", "http", status=400, body=body)
        with pytest.raises(BadRequestError) as caught:
            await make_client(fake.url).renew(fake.add_device(), fake.issue_otp())
        assert caught.value.error_codes == codes
        expected = (
            body if isinstance(body, (str, bytes)) else json.dumps(body, separators=(",", ":"))
        )
        assert caught.value.body_excerpt == (
            expected.decode() if isinstance(expected, bytes) else expected
        )

    async def test_undecodable_success_body_is_a_decode_error(
        self, fake: FakeClearTax, client: PcsidClient
    ) -> None:
        fake.inject("renew", "malformed", body="<html>not json</html>")
        with pytest.raises(ResponseDecodeError) as caught:
            await client.renew(fake.add_device(), fake.issue_otp())
        assert caught.value.reason == "body is not JSON"
        assert caught.value.status_code == 200


class TestRedirects:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    @pytest.mark.parametrize("call", ["renew", "generate_csid", "get_status"])
    async def test_redirect_is_an_error_and_the_other_host_sees_nothing(
        self, make_client: ClientFactory, status: int, call: str
    ) -> None:
        async with ScriptedServer(reply(200, json=GENERATED)) as elsewhere:
            target = f"{elsewhere.url}/onboarding/renew-pcsid"
            async with ScriptedServer(redirect(target, status)) as server:
                client = make_client(server.url)
                pending: Awaitable[object]
                if call == "get_status":
                    pending = client.get_status(ACTIVITY)
                else:
                    pending = getattr(client, call)(DEVICE, OTP)
                with pytest.raises(APIStatusError) as caught:
                    await pending
        assert type(caught.value) is APIStatusError
        assert caught.value.status_code == status
        assert len(server.requests) == 1
        assert elsewhere.requests == []


class TestConstructorValidation:
    @pytest.mark.parametrize("token", ["", "   ", "tok en", "tok\nen", "tok\x00", None, 42])
    def test_bad_auth_token(self, token: Any) -> None:
        with pytest.raises(ValueError, match="auth_token") as caught:
            PcsidClient(token, VAT)
        assert isinstance(caught.value, InvalidArgumentError)
        if isinstance(token, str) and token.strip():
            assert token not in str(caught.value)

    @pytest.mark.parametrize("vat", ["", " ", "300 000", "300\t", "300\r\nX-Evil: 1", None])
    def test_bad_vat(self, vat: Any) -> None:
        with pytest.raises(ValueError, match="vat"):
            PcsidClient(TOKEN, vat)

    @pytest.mark.parametrize(
        "base_url",
        [
            "http://api.cleartax.com/middle-east/ksa/einvoicing",
            "http://10.0.0.1/x",
            "http://localhost.example.com/x",
            "http://127.0.0.1.nip.io/x",
            "ftp://127.0.0.1/x",
            "https://",
            "not a url",
            "/relative/path",
            "https://user:pw@api.cleartax.com/x",
            "https://api.cleartax.com/x?debug=1",
            "https://api.cleartax.com/x#frag",
            "http://[::1/x",
        ],
    )
    def test_bad_base_url(self, base_url: str) -> None:
        with pytest.raises(ValueError, match="base_url"):
            PcsidClient(TOKEN, VAT, base_url=base_url)

    @pytest.mark.parametrize(
        "base_url",
        [
            "http://127.0.0.1:8080/x",
            "http://127.9.8.7/x",
            "http://[::1]:8080/x",
            "http://localhost:8080/x",
            "https://api-sandbox.cleartax.com/middle-east/ksa/einvoicing",
            "https://api.cleartax.com/middle-east/ksa/einvoicing/",
        ],
    )
    def test_https_or_loopback_base_url_is_accepted(self, base_url: str) -> None:
        client = PcsidClient(TOKEN, VAT, base_url=base_url)
        assert client.base_url == base_url.rstrip("/")

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("timeout", 0),
            ("timeout", -1.0),
            ("timeout", float("nan")),
            ("max_connections", 0),
            ("max_connections", 1.5),
            ("rate_limit", 0),
            ("rate_limit", -5),
            ("retry", {"max_attempts": 2}),
            ("session", object()),
            ("user_agent", ""),
            ("user_agent", "agent\r\nX-Evil: 1"),
            ("ssl", "yes"),
        ],
    )
    def test_bad_options(self, option: str, value: Any) -> None:
        with pytest.raises(ValueError, match=option):
            PcsidClient(TOKEN, VAT, **{option: value})

    def test_skipping_certificate_checks_is_only_for_loopback(self) -> None:
        with pytest.raises(ValueError, match="ssl=False"):
            PcsidClient(TOKEN, VAT, ssl=False)
        PcsidClient(TOKEN, VAT, base_url="https://127.0.0.1:8443/x", ssl=False)

    def test_client_exposes_its_configuration(self) -> None:
        policy = quick_retry()
        client = PcsidClient(TOKEN, VAT, retry=policy, max_connections=7)
        assert (client.vat, client.retry, client.max_connections) == (VAT, policy, 7)
        assert not client.closed

    def test_default_base_url_is_the_sandbox(self) -> None:
        client = PcsidClient(TOKEN, VAT)
        assert client.base_url == "https://api-sandbox.cleartax.com/middle-east/ksa/einvoicing"


class TestCallValidation:
    """Bad arguments raise ValueError naming the argument, before any request."""

    @pytest.mark.parametrize(
        ("args", "name"),
        [
            (("", OTP), "device_id"),
            ((" ", OTP), "device_id"),
            (("dev ice", OTP), "device_id"),
            ((None, OTP), "device_id"),
            ((DEVICE, ""), "otp"),
            ((DEVICE, "12 34"), "otp"),
            ((DEVICE, "1234\n"), "otp"),
            ((DEVICE, 123456), "otp"),
        ],
    )
    @pytest.mark.parametrize("call", ["renew", "generate_csid"])
    async def test_bad_device_or_otp(
        self, fake: FakeClearTax, client: PcsidClient, call: str, args: tuple[Any, Any], name: str
    ) -> None:
        with pytest.raises(InvalidArgumentError, match=f"^{name} ") as caught:
            await getattr(client, call)(*args)
        assert isinstance(caught.value, ValueError)
        assert fake.count() == 0

    @pytest.mark.parametrize("vat", ["", " ", "300 1", "300\n", 300])
    async def test_bad_per_call_vat(
        self, fake: FakeClearTax, client: PcsidClient, vat: Any
    ) -> None:
        with pytest.raises(ValueError, match=r"^vat "):
            await client.renew(DEVICE, OTP, vat=vat)
        with pytest.raises(ValueError, match=r"^vat "):
            await client.get_status(ACTIVITY, vat=vat)
        assert fake.count() == 0

    @pytest.mark.parametrize(
        "activity_id",
        [
            "",
            " ",
            "a/b",
            "a\\b",
            "..",
            ".",
            "a..b",
            "a?b=1",
            "a#b",
            "a%2Fb",
            "a b",
            "a\tb",
            "a\x00b",
            "a\x7fb",
            "\u2028",
            None,
        ],
    )
    async def test_unsafe_activity_id(
        self, fake: FakeClearTax, client: PcsidClient, activity_id: Any
    ) -> None:
        with pytest.raises(ValueError, match=r"^activity_id "):
            await client.get_status(activity_id)
        assert fake.count() == 0

    @pytest.mark.parametrize(
        "activity_id",
        [ACTIVITY, DEVICE, "a:b@c", "x;y=z", "a.b", "~tilde_", "é-ü-1", "a+b", "it's(1)"],
    )
    async def test_safe_activity_id_reaches_the_server_as_one_segment(
        self, fake: FakeClearTax, client: PcsidClient, activity_id: str
    ) -> None:
        with pytest.raises(BadRequestError):  # unknown to the fake, which logs what it saw
            await client.get_status(activity_id)
        (seen,) = fake.requests
        assert seen.activity_id == activity_id
        assert seen.path == f"/middle-east/ksa/einvoicing/onboarding/{activity_id}/pcsid-status"

    @given(st.text(max_size=30))
    def test_activity_id_is_refused_or_stays_exactly_one_path_segment(
        self, activity_id: str
    ) -> None:
        try:
            segment = check_activity_id(activity_id)
        except InvalidArgumentError:
            return
        url = URL(f"http://127.0.0.1/onboarding/{segment}/pcsid-status")
        assert url.parts == ("/", "onboarding", activity_id, "pcsid-status")
        assert url.query_string == ""
        assert url.fragment == ""


def echo_secrets(status: int, *, activity: bool = False) -> Any:
    """A step answering with the request's token and OTP echoed in every field it can."""

    async def step(request: web.Request) -> web.StreamResponse:
        token = request.headers.get("x-cleartax-auth-token", "")
        raw = await request.read()
        otp = json.loads(raw)["Otp"] if raw else ""
        detail = {
            "ErrorCode": f"E-{otp}",
            "ErrorMessage": f"token {token} otp {otp}",
            "ErrorSource": token,
            "Path": otp,
        }
        body: dict[str, Any] = {"Status": "FAILED", "ErrorList": [detail], "Echo": [token, otp]}
        if activity:
            body = {"ActivityType": "X", "Status": token, "ErrorList": [detail]}
        return web.json_response(body, status=status)

    return step


class TestSecretHygiene:
    """The token and OTPs never reach a repr, an exception's text or a log record."""

    SECRETS = (TOKEN, OTP)

    def assert_clean(self, *texts: str) -> None:
        for text in texts:
            for secret in self.SECRETS:
                assert secret not in text

    def assert_clean_error(self, error: BaseException) -> None:
        self.assert_clean(str(error), repr(error), "".join(traceback.format_exception(error)))
        if isinstance(error, APIStatusError):
            self.assert_clean(error.body_excerpt, repr(error.errors))

    async def test_no_repr_exception_or_log_record_shows_a_secret(
        self, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        errors: list[BaseException] = []
        async with ScriptedServer(
            echo_secrets(200),  # a FAILED renewal, a result
            echo_secrets(400),
            echo_secrets(503),
            echo_secrets(503),
            echo_secrets(200, activity=True),  # an undecodable status quoting the token
            drop(),
            echo_secrets(500),
        ) as server:
            client = make_client(server.url, retry=quick_retry(max_attempts=2))
            result = await client.renew(DEVICE, OTP)
            self.assert_clean(repr(result), str(result.errors[0]), repr(client))
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: client.renew(DEVICE, OTP),
                lambda: client.get_status(ACTIVITY),
                lambda: client.get_status(ACTIVITY),
                lambda: client.generate_csid(DEVICE, OTP),
                lambda: client.generate_csid(DEVICE, OTP),
            ]
            for call in calls:
                with pytest.raises(PcsidError) as caught:
                    await call()
                errors.append(caught.value)
        assert [type(e).__name__ for e in errors] == [
            "BadRequestError",
            "InternalServerError",
            "ResponseDecodeError",
            "APIConnectionError",
            "InternalServerError",
        ]
        for error in errors:
            self.assert_clean_error(error)
        assert any(r.name == "pcsid_async" for r in caplog.records)
        for record in caplog.records:
            self.assert_clean(record.getMessage(), repr(record.msg), repr(record.args))

    async def test_timeout_error_shows_no_secret(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(sleep_then(1.0, reply(200))) as server:
            client = make_client(server.url, timeout=0.05, retry=NO_RETRY)
            with pytest.raises(APIConnectionError) as caught:
                await client.renew(DEVICE, OTP)
        self.assert_clean_error(caught.value)

    def test_client_repr_shows_no_token(self) -> None:
        client = PcsidClient(TOKEN, VAT)
        assert TOKEN not in repr(client)
        assert VAT in repr(client)

    async def test_validation_errors_never_repeat_the_value(self, client: PcsidClient) -> None:
        bad_otp = "OTP 7f3e91"
        with pytest.raises(ValueError, match="otp") as caught:
            await client.renew(DEVICE, bad_otp)
        assert bad_otp not in str(caught.value)
        bad_token = "tok SECRET 5f3c9a1e7b2d4c6e"
        with pytest.raises(ValueError, match="auth_token") as caught:
            PcsidClient(bad_token, VAT)
        assert bad_token not in str(caught.value)


class TestLogging:
    async def test_each_request_logs_method_path_status_attempt_and_elapsed(
        self, fake: FakeClearTax, client: PcsidClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="pcsid_async")
        activity = fake.create_activity()
        fake.inject("status", "server_error", status=503, retry_after=0.001)
        await client.get_status(activity)
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "pcsid_async" and r.levelno == logging.DEBUG
        ]
        path = f"/onboarding/{activity}/pcsid-status"
        pattern = re.compile(rf"GET {path} -> (\d+) \(attempt (\d), \d+(\.\d+)? ms\)")
        found = [m.groups()[:2] for m in map(pattern.fullmatch, lines) if m]
        assert found == [("503", "1"), ("200", "2")]


class TestSessionOwnership:
    async def test_a_borrowed_session_is_used_and_stays_open_after_close(
        self, fake: FakeClearTax
    ) -> None:
        started: list[str] = []

        async def on_start(session: Any, ctx: Any, params: Any) -> None:
            started.append(params.method)

        tracing = aiohttp.TraceConfig()
        tracing.on_request_start.append(on_start)
        async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
            async with PcsidClient(TOKEN, VAT, base_url=fake.url, session=session) as client:
                await client.get_status(fake.create_activity())
            assert client.closed
            assert not session.closed
            # Still the caller's to use.
            async with PcsidClient(TOKEN, VAT, base_url=fake.url, session=session) as again:
                await again.get_status(fake.create_activity())
        assert started == ["GET", "GET"]

    async def test_a_borrowed_session_that_raises_for_status_still_gives_typed_errors(
        self, fake: FakeClearTax
    ) -> None:
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            client = PcsidClient(TOKEN, VAT, base_url=fake.url, session=session)
            with pytest.raises(BadRequestError):
                await client.get_status("000000000000000000000000")
            await client.close()

    async def test_the_clients_own_session_is_closed_by_close(self, fake: FakeClearTax) -> None:
        client = PcsidClient(TOKEN, VAT, base_url=fake.url)
        await client.get_status(fake.create_activity())
        session = client._transport._session  # the client's own, private
        assert session is not None
        assert not session.closed
        await client.close()
        assert session.closed

    async def test_leaving_async_with_closes_the_own_session(self, fake: FakeClearTax) -> None:
        async with PcsidClient(TOKEN, VAT, base_url=fake.url) as client:
            session = client._transport._session
            assert session is not None
        assert session.closed
        assert client.closed

    def test_a_client_built_outside_a_loop_opens_nothing(self) -> None:
        """The session is created inside the running loop on first use, not by __init__."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = PcsidClient(TOKEN, VAT)
            assert client._transport._session is None
            del client
            gc.collect()
        assert caught == []

    async def test_no_unclosed_session_warning_after_use(
        self, fake: FakeClearTax, caplog: pytest.LogCaptureFixture
    ) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with PcsidClient(TOKEN, VAT, base_url=fake.url) as client:
                await client.get_status(fake.create_activity())
            del client
            gc.collect()
            await asyncio.sleep(0)
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        assert "Unclosed" not in caplog.text

    @pytest.mark.parametrize("call", ["renew", "generate_csid", "get_status", "enter"])
    async def test_a_closed_client_refuses_work(self, fake: FakeClearTax, call: str) -> None:
        client = PcsidClient(TOKEN, VAT, base_url=fake.url)
        await client.close()
        pending: Awaitable[object]
        if call == "get_status":
            pending = client.get_status(ACTIVITY)
        elif call == "enter":
            pending = client.__aenter__()
        else:
            pending = getattr(client, call)(DEVICE, OTP)
        with pytest.raises(ClientClosedError, match="closed") as caught:
            await pending
        assert isinstance(caught.value, RuntimeError)
        assert fake.count() == 0

    async def test_close_is_idempotent(self, fake: FakeClearTax) -> None:
        client = PcsidClient(TOKEN, VAT, base_url=fake.url)
        await client.get_status(fake.create_activity())
        await client.close()
        await client.close()
        assert client.closed


class TestRateLimit:
    async def test_requests_are_spaced_by_the_rate_limit_across_all_calls(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        client = make_client(fake.url, rate_limit=50)
        devices = fake.add_devices(2)
        fresh = fake.add_devices(2, has_pcsid=False)
        await asyncio.gather(
            client.get_status(fake.create_activity()),
            client.get_status(fake.create_activity()),
            *(client.renew(d, fake.issue_otp()) for d in devices),
            *(client.generate_csid(d, fake.issue_otp()) for d in fresh),
        )
        times = sorted(fake.request_times())
        assert len(times) == 6
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        # 1/50 s is enforced at the client; allow a quarter of it for loopback jitter.
        assert min(gaps) >= 0.015, gaps

    async def test_a_busy_loop_does_not_let_overdue_requests_burst(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        """The gap is enforced between actual starts, not only between planned slots."""
        loop = asyncio.get_running_loop()
        starts: list[float] = []

        async def on_start(session: Any, ctx: Any, params: Any) -> None:
            # time.monotonic(), not loop.time(): uvloop's is cached at each loop iteration's
            # start and whole milliseconds.
            starts.append(time.monotonic())

        tracing = aiohttp.TraceConfig()
        tracing.on_request_start.append(on_start)
        # 25/s: slots T = 1.015 s / 25 = 40.6 ms apart; the pacer never lets two starts come
        # closer than T - 10 ms (its lateness allowance), and overdue ones not at once.
        client = make_client(fake.url, rate_limit=25, trace_configs=[tracing])
        activities = [fake.create_activity() for _ in range(4)]
        # Block the loop from 50 ms to 150 ms: the slots at 81 ms and 122 ms are both overdue.
        loop.call_later(0.05, time.sleep, 0.1)
        await asyncio.gather(*(client.get_status(a) for a in activities))
        # Measured where the client starts each request, so that a starved server (it shares
        # this loop) cannot blur the gaps; 5 ms below the bound for the OS preempting this
        # process between a start and its trace (seen: 3 ms on a loaded machine). A burst
        # would put two starts about 0 ms apart.
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert min(gaps) >= 0.0254, gaps

    async def test_without_a_rate_limit_calls_overlap(self, make_client: ClientFactory) -> None:
        """The control: unthrottled, the same calls are in flight together on the server."""
        async with FakeClearTax(token=TOKEN, vats=[VAT], latency=0.05) as slow:
            client = make_client(slow.url)
            await asyncio.gather(*(client.get_status(slow.create_activity()) for _ in range(6)))
            assert slow.max_in_flight > 1


class TestHeaders:
    async def test_default_user_agent_names_the_package(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(reply(200, json=GENERATED)) as server:
            await make_client(server.url).renew(DEVICE, OTP)
        assert server.requests[0].headers["User-Agent"].startswith("pcsid-async/")

    async def test_custom_user_agent(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(reply(200, json=GENERATED)) as server:
            await make_client(server.url, user_agent="erp-sync/2.0").renew(DEVICE, OTP)
        assert server.requests[0].headers["User-Agent"] == "erp-sync/2.0"

    async def test_trailing_slash_in_base_url_is_harmless(self, make_client: ClientFactory) -> None:
        async with ScriptedServer(reply(200, json=GENERATED)) as server:
            await make_client(server.url + "/").renew(DEVICE, OTP)
        assert server.requests[0].path == "/api/onboarding/renew-pcsid"

    async def test_extra_trace_configs_see_every_request(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        ends: list[int] = []

        async def on_end(session: Any, ctx: Any, params: Any) -> None:
            ends.append(params.response.status)

        tracing = aiohttp.TraceConfig()
        tracing.on_request_end.append(on_end)
        client = make_client(fake.url, trace_configs=[tracing])
        await client.get_status(fake.create_activity())
        assert ends == [200]
