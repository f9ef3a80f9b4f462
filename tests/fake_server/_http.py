"""HTTP helpers for the tests of the fake server: a raw aiohttp client over loopback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import attrs

from pcsid_async.testing import (
    FakeClearTax,
)

RENEW = "/onboarding/renew-pcsid"
GENERATE = "/onboarding/generate-csid"
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def status_path(activity_id: str) -> str:
    return f"/onboarding/{activity_id}/pcsid-status"


@attrs.frozen
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def auth(fake: FakeClearTax, *, token: str | None = None, vat: str | None = None) -> dict[str, str]:
    return {
        "x-cleartax-auth-token": fake.token if token is None else token,
        "vat": fake.vat if vat is None else vat,
    }


async def call(
    session: aiohttp.ClientSession,
    fake: FakeClearTax,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    data: bytes | None = None,
    timeout: float | None = None,
) -> Answer:
    async with session.request(
        method,
        fake.url + path,
        headers=auth(fake) if headers is None else headers,
        json=json_body,
        data=data,
        timeout=aiohttp.ClientTimeout(total=timeout) if timeout is not None else None,
    ) as response:
        return Answer(response.status, dict(response.headers), await response.text())


async def renew(
    session: aiohttp.ClientSession,
    fake: FakeClearTax,
    device_id: str,
    otp: str,
    **kwargs: Any,
) -> Answer:
    return await call(
        session, fake, "POST", RENEW, json_body={"DeviceId": device_id, "Otp": otp}, **kwargs
    )


async def generate(
    session: aiohttp.ClientSession, fake: FakeClearTax, device_id: str, otp: str
) -> Answer:
    return await call(
        session, fake, "POST", GENERATE, json_body={"DeviceId": device_id, "Otp": otp}
    )


async def poll(
    session: aiohttp.ClientSession, fake: FakeClearTax, activity_id: str, **kwargs: Any
) -> Answer:
    return await call(session, fake, "GET", status_path(activity_id), **kwargs)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every millisecond (Python 3.10: no timeout())."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


def rejection(code: str, message: str, source: str, path: str) -> dict[str, Any]:
    """A POST's 400 body with one error, as the provider sends it."""
    error = {"ErrorCode": code, "ErrorMessage": message, "ErrorSource": source, "Path": path}
    return {"Status": "FAILED", "ErrorList": [error]}


REGISTER = "/onboarding/register-device"
GENERATE_CSR = "/onboarding/generate-csr"
VAT = "300000000000003"
SERIAL = "1-ClearPOS|2-Model7|3-SN0001"


def details(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "CommonName": "Till 1",
        "EgsSerialNumber": SERIAL,
        "Location": "Riyadh, King Fahd Road 12",
        "Industry": "Retail",
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not None}


def body(*, otp: str | None = None, vat: str = VAT, **device_overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "DeviceDetails": details(**device_overrides),
        "OrganizationDetails": {"Vat": vat, "Name": "Example Trading Co"},
    }
    if otp is not None:
        payload["Otp"] = otp
    return payload


async def register(
    session: aiohttp.ClientSession, fake: FakeClearTax, payload: Any, **kwargs: Any
) -> Answer:
    return await call(session, fake, "POST", REGISTER, json_body=payload, **kwargs)


async def generate_csr(
    session: aiohttp.ClientSession, fake: FakeClearTax, payload: Any, **kwargs: Any
) -> Answer:
    return await call(session, fake, "POST", GENERATE_CSR, json_body=payload, **kwargs)


#: The provider's answer to a spent, unknown or foreign OTP.
INVALID_OTP = rejection("Invalid-OTP", "OTP is invalid or already used", "ZATCA", "Otp")
