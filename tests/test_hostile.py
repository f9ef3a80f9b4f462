"""Hostile and broken answers: every one bounded in bytes, time and parser depth."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _hostile_server import HostileServer, Script, answer, gzip_bomb, trickle

from pcsid_async import (
    ActivityTimeoutError,
    APIConnectionError,
    APITimeoutError,
    InvalidArgumentError,
    OutcomeState,
    PcsidClient,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
    RetryPolicy,
)

TOKEN = "tok-hostile-0123456789"
VAT = "300000000000003"
OTP = "123456"
ACTIVITY = "0f8fad5b-d9cb-469f-a165-70867728950e"
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002, max_retry_after=0.05)
# The documented slack past `timeout`: 1/32 of it (the shared deadline timers) plus loop latency.
SLACK = 0.5

BOMB = gzip_bomb(64 * 1024 * 1024)


def client_for(url: str, **kwargs: object) -> PcsidClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", 0.5)
    return PcsidClient(TOKEN, VAT, base_url=url, **kwargs)  # type: ignore[arg-type]


Serve = Callable[[Script], Awaitable[HostileServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[HostileServer] = []

    async def start(script: Script) -> HostileServer:
        server = HostileServer(script)
        await server.__aenter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.__aexit__()


GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


class TestBoundedBytes:
    async def test_a_gzip_bomb_stops_at_the_cap(self, serve: Serve) -> None:
        server = await serve(answer(200, BOMB, GZIP))
        async with client_for(server.url) as client:
            started = time.monotonic()
            with pytest.raises(ResponseTooLargeError) as info:
                await client.get_status(ACTIVITY)
            took = time.monotonic() - started
        assert info.value.limit == 1024 * 1024
        assert f"GET /onboarding/{ACTIVITY}/pcsid-status" in str(info.value)
        assert "max_response_bytes=1048576" in str(info.value)
        assert TOKEN not in str(info.value)
        assert took < 5  # generous: reading 64 MB whole would take much longer and its RAM
        assert server.requests == 1  # same rules as an undecodable answer: not retried

    async def test_a_plain_content_length_over_the_cap_is_refused_before_reading(
        self, serve
    ) -> None:
        server = await serve(answer(200, b"x" * 5000))
        async with client_for(server.url, max_response_bytes=4096) as client:
            with pytest.raises(ResponseTooLargeError, match="max_response_bytes=4096"):
                await client.get_status(ACTIVITY)

    async def test_an_answer_at_the_cap_is_read(self, serve: Serve) -> None:
        body = json.dumps({"ActivityType": "PCSID_GENERATION", "Status": "IN_PROGRESS"})
        server = await serve(answer(200, body.encode()))
        async with client_for(server.url, max_response_bytes=len(body)) as client:
            status = await client.get_status(ACTIVITY)
        assert status.state.value == "IN_PROGRESS"

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
    def test_the_cap_is_validated(self, bad: object) -> None:
        with pytest.raises(InvalidArgumentError, match="max_response_bytes"):
            PcsidClient(TOKEN, VAT, max_response_bytes=bad)  # type: ignore[arg-type]

    async def test_a_bomb_answering_an_otp_post_is_unknown_in_a_batch(self, serve: Serve) -> None:
        server = await serve(answer(200, BOMB, GZIP))
        async with client_for(server.url) as client:
            outcomes = [o async for o in client.renew_many([("dev-1", OTP), ("dev-2", OTP + "1")])]
        assert sorted(o.device_id for o in outcomes) == ["dev-1", "dev-2"]
        for outcome in outcomes:
            assert outcome.state is OutcomeState.UNKNOWN
            assert isinstance(outcome.error, ResponseTooLargeError)
            assert "may have been processed" in str(outcome.error)
            assert OTP not in str(outcome.error)
        assert server.requests == 2  # never re-sent

    def test_200_concurrent_bombs_keep_rss_growth_bounded(self) -> None:
        """Measured in a fresh subprocess: its peak RSS over its own baseline."""
        code = RSS_PROBE
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        growth_mb, errors = out.split()
        assert int(errors) == 200
        assert float(growth_mb) < 200, growth_mb


RSS_PROBE = """
import asyncio, resource, sys
sys.path.insert(0, "tests")
from _hostile_server import HostileServer, answer, gzip_bomb
from pcsid_async import PcsidClient, ResponseTooLargeError, RetryPolicy

async def main():
    bomb = gzip_bomb(400 * 1024 * 1024)
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with HostileServer(answer(200, bomb, headers)) as server:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with PcsidClient("tok-0123456789", "300000000000003", base_url=server.url,
                               timeout=60, max_connections=200,
                               retry=RetryPolicy(max_attempts=1)) as client:
            async def one():
                try:
                    await client.get_status("0f8fad5b-d9cb-469f-a165-70867728950e")
                except ResponseTooLargeError:
                    return 1
                return 0
            got = await asyncio.gather(*(one() for _ in range(200)))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - base) / 1024, sum(got))

asyncio.run(main())
"""


class TestBoundedTime:
    @pytest.mark.parametrize(
        "script",
        [
            pytest.param(trickle(b"HTTP/1.1 200 OK\r\n", 0.02), id="headers-trickle"),
            pytest.param(
                trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 0.02),
                id="body-trickle",
            ),
            pytest.param(
                trickle(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0.02),
                id="stream-forever",
            ),
        ],
    )
    async def test_a_trickling_answer_times_out_within_the_timeout(
        self, serve: Serve, script: Script
    ) -> None:
        server = await serve(script)
        async with client_for(server.url, retry=RetryPolicy(max_attempts=1)) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match=r"no answer within 0\.5 s"):
                await client.get_status(ACTIVITY)
            took = time.monotonic() - started
        assert took < 0.5 + SLACK

    async def test_the_poller_stays_within_its_deadline(self, serve: Serve) -> None:
        server = await serve(trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n", 0.02))
        async with client_for(server.url, timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(ActivityTimeoutError):
                await client.await_activity(ACTIVITY, timeout=0.6, interval=0.01)
            took = time.monotonic() - started
        assert took < 0.6 + SLACK


class TestHeaders:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({f"X-Flood-{i}": "v" for i in range(1000)}, id="flood"),
            pytest.param({"X-Huge": "v" * 200_000}, id="enormous"),
        ],
    )
    async def test_bad_headers_are_a_connection_error(
        self, serve: Serve, headers: dict[str, str]
    ) -> None:
        server = await serve(answer(200, b"{}", headers))
        async with client_for(server.url, retry=RetryPolicy(max_attempts=1)) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.get_status(ACTIVITY)
        assert "/pcsid-status" in str(info.value)


class TestParserBreakingBodies:
    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            pytest.param(b'{"Status": "\xff\xfe"}', "not JSON", id="invalid-utf8"),
            pytest.param(b"[" * 100_000 + b"]" * 100_000, "not JSON", id="deep"),
            pytest.param(b'{"n": ' + b"9" * 1_000_000 + b"}", "not JSON", id="million-digits"),
            pytest.param(b'"just a string"', "", id="top-level-string"),
        ],
    )
    async def test_each_is_a_decode_error(self, serve: Serve, body: bytes, reason: str) -> None:
        server = await serve(answer(200, body, {"Content-Type": "application/json"}))
        async with client_for(server.url, max_response_bytes=2_000_000) as client:
            started = time.monotonic()
            with pytest.raises(ResponseDecodeError) as info:
                await client.get_status(ACTIVITY)
            took = time.monotonic() - started
            with pytest.raises(ResponseDecodeError):
                await client.renew("dev-1", OTP)
            outcomes = [o async for o in client.renew_many([("dev-2", OTP)])]
        assert reason in info.value.reason
        assert len(info.value.reason) < 200
        assert took < 2
        assert [o.state for o in outcomes] == [OutcomeState.UNKNOWN]


class TestRetryAfterGarbage:
    @pytest.mark.parametrize(
        "value", ["-5", str(10**12), "Thu, 01 Jan 1970 00:00:00 GMT", "\u0661\u0662", "1e999"]
    )
    async def test_never_a_sleep_past_the_cap(self, serve: Serve, value: str) -> None:
        server = await serve(answer(429, b"{}", {"Retry-After": value}))
        async with client_for(server.url) as client:
            started = time.monotonic()
            with pytest.raises(RateLimitError) as info:
                await client.get_status(ACTIVITY)
            took = time.monotonic() - started
            outcomes = [o async for o in client.renew_many([("dev-1", OTP)])]
        assert took < 4 * 0.05 + SLACK  # max_retry_after is 0.05 s
        retry_after = info.value.retry_after
        assert retry_after is None or retry_after >= 0
        assert [o.state for o in outcomes] == [OutcomeState.FAILED]
