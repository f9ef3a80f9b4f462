"""A tiny scripted HTTP server on loopback, for answers the fake ClearTax server cannot give.

``ScriptedServer`` answers each request with the next step of its script (the last step
repeats) and records what it received: method, path, headers, body and arrival time.
A step is an async callable taking the ``aiohttp.web.Request`` and returning a response, or
``None`` to drop the connection without answering. The helpers build the usual steps::

    async with ScriptedServer(reply(503), reply(200, json={"Status": "GENERATED"})) as server:
        ...  # point a client at server.url
        assert len(server.requests) == 2

Sleeps inside steps end early when the server closes, so a test never waits on a handler the
client has given up on. The module also holds the test credentials and ``quick_retry``, shared
by every test file.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from pcsid_async import RetryPolicy

__all__ = [
    "OTHER_VAT",
    "TOKEN",
    "VAT",
    "Seen",
    "ScriptedServer",
    "Step",
    "drop",
    "quick_retry",
    "redirect",
    "reply",
    "sleep_then",
]

Step = Callable[[web.Request], Awaitable["web.StreamResponse | None"]]

# Test credentials: distinctive values, so a leak is found by a plain substring search.
TOKEN = "tok-SECRET-5f3c9a1e7b2d4c6e"
VAT = "300000000000003"
OTHER_VAT = "311111111111113"


def quick_retry(**overrides: Any) -> RetryPolicy:
    """A retry policy whose backoff sleeps a millisecond or two, never for real."""
    settings: dict[str, Any] = {
        "max_attempts": 3,
        "initial_delay": 0.001,
        "max_delay": 0.002,
        "max_elapsed": 30.0,
        "max_retry_after": 5.0,
    }
    settings.update(overrides)
    return RetryPolicy(**settings)


# Where the scripted server mounts everything, like the real API's prefix.
PREFIX = "/api"
_CLOSING = web.AppKey("closing", asyncio.Event)


@attrs.frozen
class Seen:
    """One request the scripted server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float


class ScriptedServer:
    """An aiohttp.web server on 127.0.0.1 (port 0) answering from a script of steps."""

    def __init__(self, *steps: Step) -> None:
        self._steps = list(steps) or [reply(200)]
        self._next = 0
        self.requests: list[Seen] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app[_CLOSING] = self._closing
        self._app = app

    @property
    def url(self) -> str:
        """The base URL to give a client."""
        return f"http://127.0.0.1:{self._port}{PREFIX}"

    @property
    def closing(self) -> asyncio.Event:
        """Set when the server starts closing (steps that wait should stop waiting)."""
        return self._closing

    async def __aenter__(self) -> ScriptedServer:
        runner = web.AppRunner(
            self._app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=body,
                at=time.monotonic(),
            )
        )
        step = self._steps[min(self._next, len(self._steps) - 1)]
        self._next += 1
        response = await step(request)
        if response is None:
            if request.transport is not None:
                request.transport.close()
            # Never delivered: aiohttp refuses to write to a closing transport, quietly.
            return web.Response(status=204)
        return response


def reply(
    status: int = 200,
    *,
    json: Any = None,
    body: bytes | str = b"",
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> Step:
    """A step answering ``status`` with a JSON value (``json=``) or raw ``body``."""
    if json is not None:
        payload = jsonlib.dumps(json).encode()
        kind = content_type or "application/json"
    else:
        payload = body.encode() if isinstance(body, str) else body
        kind = content_type or "text/plain"

    async def step(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=status, body=payload, headers=headers)
        response.content_type = kind
        return response

    return step


def redirect(location: str, status: int = 302) -> Step:
    """A step answering with a redirect to ``location``."""
    return reply(status, headers={"Location": location})


def sleep_then(seconds: float, then: Step) -> Step:
    """A step that waits ``seconds`` (or until the server closes), then runs ``then``."""

    async def step(request: web.Request) -> web.StreamResponse | None:
        try:
            await asyncio.wait_for(request.app[_CLOSING].wait(), seconds)
        except asyncio.TimeoutError:
            return await then(request)
        return None

    return step


def drop() -> Step:
    """A step that closes the connection after reading the request, without answering."""

    async def step(request: web.Request) -> None:
        return None

    return step
