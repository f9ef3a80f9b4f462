"""Through a real nginx (TLS reverse proxy) in front of FakeClearTax: its own 502s and 504s."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from _nginx import NGINX, free_port, nginx_proxy

from pcsid_async import BadRequestError, InternalServerError, OutcomeState, PcsidClient, RetryPolicy
from pcsid_async.testing import FakeClearTax

# Python 3.10's asyncio leaves an SSL transport "unclosed" when the peer closes first (its old
# sslproto never marks the app transport closed); 3.11's rewrite fixed it. Not our leak: the
# same tests hold on 3.11+ with every ResourceWarning an error.
_PY310_SSL = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function _SSLProtocolTransport.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

if NGINX is None and os.environ.get("PCSID_REQUIRE_NGINX"):  # set by .ci/run: run, never skip
    raise RuntimeError("PCSID_REQUIRE_NGINX is set but nginx is not installed")
pytestmark = [
    pytest.mark.skipif(
        NGINX is None, reason="nginx is not installed (.ci/run installs it with apt-get)"
    ),
    *([_PY310_SSL] if sys.version_info < (3, 11) else []),
]

TOKEN = "tok-gateway-0123456789"
VAT = "300000000000003"
PREFIX = "/middle-east/ksa/einvoicing"  # FakeClearTax.url's path, as the real API's
QUICK = RetryPolicy(initial_delay=0.05, max_delay=0.1, max_attempts=6)


def renew_posts(fake: FakeClearTax) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")


async def test_a_renewal_and_a_status_poll_go_through(tmp_path: Path) -> None:
    async with FakeClearTax(token=TOKEN, vats=(VAT,), renew_starts_activity=True) as fake:
        device, otp = fake.add_device(), fake.issue_otp()
        with nginx_proxy(tmp_path, fake.port) as (url, ctx):
            async with PcsidClient(
                TOKEN, VAT, base_url=url + PREFIX, ssl=ctx, retry=QUICK
            ) as client:
                result = await client.renew(device, otp)
                assert result.activity_id is not None
                status = await client.await_activity(result.activity_id, interval=0.01)
    assert status.is_terminal
    assert len(fake.ledger[device]) == 1


async def test_a_504_is_unknown_in_a_batch_and_the_post_is_not_resent(tmp_path: Path) -> None:
    async with FakeClearTax(token=TOKEN, vats=(VAT,), latency={"renew": 0.6}) as fake:
        device, otp = fake.add_device(), fake.issue_otp()
        with nginx_proxy(tmp_path, fake.port, read_timeout="200ms") as (url, ctx):
            async with PcsidClient(
                TOKEN, VAT, base_url=url + PREFIX, ssl=ctx, retry=QUICK
            ) as client:
                outcomes = [o async for o in client.renew_many([(device, otp)])]
            await asyncio.sleep(0.7)  # the fake finishes what nginx gave up on
    [outcome] = outcomes
    assert outcome.state is OutcomeState.UNKNOWN
    assert isinstance(outcome.error, InternalServerError)
    assert outcome.error.status_code == 504
    assert otp not in str(outcome.error)
    assert renew_posts(fake) == 1  # sent once
    assert len(fake.ledger[device]) == 1  # processed: reporting FAILED would have lied


async def test_a_502_get_is_retried_until_the_upstream_returns(tmp_path: Path) -> None:
    upstream = free_port()
    with nginx_proxy(tmp_path, upstream) as (url, ctx):
        async with PcsidClient(TOKEN, VAT, base_url=url + PREFIX, ssl=ctx, retry=QUICK) as client:
            async with FakeClearTax(token=TOKEN, vats=(VAT,)) as probe:
                activity = probe.create_activity()
            with pytest.raises(InternalServerError) as info:
                await client.renew("dev-1", "otp-12345")  # nginx cannot reach it: 502
            assert info.value.status_code == 502
            outcomes = [o async for o in client.renew_many([("dev-2", "otp-67890")])]
            assert [o.state for o in outcomes] == [OutcomeState.UNKNOWN]

            async def upstream_returns() -> FakeClearTax:
                await asyncio.sleep(0.1)
                fake = FakeClearTax(token=TOKEN, vats=(VAT,), port=upstream, auto_register=True)
                await fake.start()
                return fake

            starting = asyncio.ensure_future(upstream_returns())
            try:
                # Retried through nginx's 502s until the fake is back: it answers, 400 (the
                # activity is not one of its own), and not 502.
                with pytest.raises(BadRequestError):
                    await client.get_status(activity)
            finally:
                fake = await starting
            try:
                assert renew_posts(fake) == 0  # neither POST was re-sent once it came back
                assert not dict(fake.ledger)
                assert [r.method for r in fake.requests] == ["GET"]
            finally:
                await fake.close()


async def test_a_post_on_a_connection_the_proxy_closed_is_sent_once(tmp_path: Path) -> None:
    """nginx's keepalive_timeout is 1 s: the pooled connection is closed when the POST goes."""
    async with FakeClearTax(token=TOKEN, vats=(VAT,)) as fake:
        devices = [fake.add_device() for _ in range(2)]
        otps = [fake.issue_otp() for _ in range(2)]
        with nginx_proxy(tmp_path, fake.port) as (url, ctx):
            async with PcsidClient(TOKEN, VAT, base_url=url + PREFIX, ssl=ctx, retry=QUICK) as c:
                await c.renew(devices[0], otps[0])
                await asyncio.sleep(1.3)
                outcomes = [o async for o in c.renew_many([(devices[1], otps[1])])]
    assert [o.state for o in outcomes] == [OutcomeState.RENEWED], outcomes
    assert renew_posts(fake) == 2
    assert all(len(fake.ledger[d]) == 1 for d in devices)
