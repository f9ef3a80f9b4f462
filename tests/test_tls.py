"""Transport security: TLS verification on by default, private CAs, ssl=False loopback only."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import trustme

from pcsid_async import APIConnectionError, InvalidArgumentError, PcsidClient, RetryPolicy
from pcsid_async.testing import FakeClearTax

TOKEN = "tls-token-9d2b77"
FAST_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.002)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_fake(ca: trustme.CA) -> AsyncIterator[FakeClearTax]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    async with FakeClearTax(token=TOKEN, ssl_context=server_context) as fake:
        yield fake


def _connection_counter() -> tuple[aiohttp.TraceConfig, list[int]]:
    attempts: list[int] = []

    async def on_create(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        attempts.append(1)

    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(on_create)
    return config, attempts


class TestVerification:
    async def test_url_is_https(self, https_fake: FakeClearTax) -> None:
        assert https_fake.url.startswith("https://127.0.0.1:")

    async def test_default_client_refuses_an_untrusted_certificate(
        self, https_fake: FakeClearTax
    ) -> None:
        device, otp = https_fake.add_device(), https_fake.issue_otp()
        counter, attempts = _connection_counter()
        async with PcsidClient(
            TOKEN,
            https_fake.vat,
            base_url=https_fake.url,
            retry=FAST_RETRY,
            trace_configs=[counter],
        ) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.renew(device, otp)

        assert caught.value.may_have_reached_server is False
        assert "certificate" in str(caught.value).lower()
        assert TOKEN not in str(caught.value)
        assert otp not in str(caught.value)
        assert https_fake.count() == 0
        assert len(attempts) == 1  # a certificate failure is not retried

    async def test_client_given_the_ca_succeeds(
        self, https_fake: FakeClearTax, ca: trustme.CA
    ) -> None:
        device, otp = https_fake.add_device(), https_fake.issue_otp()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with PcsidClient(
            TOKEN, https_fake.vat, base_url=https_fake.url, ssl=context
        ) as client:
            result = await client.renew(device, otp)

        assert result.ok
        assert len(https_fake.ledger[device]) == 1

    async def test_ssl_false_is_allowed_for_loopback(self, https_fake: FakeClearTax) -> None:
        device, otp = https_fake.add_device(), https_fake.issue_otp()
        async with PcsidClient(TOKEN, https_fake.vat, base_url=https_fake.url, ssl=False) as client:
            result = await client.renew(device, otp)

        assert result.ok


class TestConfiguration:
    def test_ssl_false_is_refused_for_a_remote_host(self) -> None:
        with pytest.raises(InvalidArgumentError, match="loopback"):
            PcsidClient(TOKEN, "300000000000003", ssl=False)

    @pytest.mark.parametrize("value", ["yes", 1, None])
    def test_ssl_must_be_a_context_or_a_bool(self, value: object) -> None:
        with pytest.raises(InvalidArgumentError, match="ssl"):
            PcsidClient(TOKEN, "300000000000003", ssl=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "url",
        [
            "http://api-sandbox.cleartax.com/middle-east/ksa/einvoicing",
            "http://10.0.0.8/x",
            "ftp://127.0.0.1/x",
            "https://user:pw@api.cleartax.com/x",
            "https://api.cleartax.com/x?debug=1",
            "not a url",
        ],
    )
    def test_plain_http_and_odd_urls_are_refused(self, url: str) -> None:
        with pytest.raises(InvalidArgumentError):
            PcsidClient(TOKEN, "300000000000003", base_url=url)

    @pytest.mark.parametrize(
        "url",
        ["http://127.0.0.1:8080/x", "http://127.5.6.7/x", "http://localhost/x", "http://[::1]:9/x"],
    )
    def test_plain_http_is_allowed_for_loopback(self, url: str) -> None:
        client = PcsidClient(TOKEN, "300000000000003", base_url=url)
        assert client.base_url.startswith("http://")
