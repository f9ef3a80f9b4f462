"""The request pipeline's checks: authentication, VAT and body shape (``_routes``)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from fake_server._http import (
    GENERATE,
    RENEW,
    auth,
    call,
    poll,
    renew,
    status_path,
)
from pcsid_async.testing import (
    FakeClearTax,
)


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
