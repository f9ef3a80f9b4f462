"""Event-loop binding of a client: the error for another loop, and closing with the loop.

A client binds to the first running loop that uses it (like an ``aiohttp.ClientSession`` or
an ``httpx.AsyncClient``, whose connections belong to one loop). The transport refuses any use
from another loop with :class:`EventLoopMismatchError`, built here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import aiohttp

from ._errors import EventLoopMismatchError

__all__ = ["close_with_loop", "other_loop"]


def close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Close ``session`` when the loop it was made in shuts down, if nobody closed it first.

    An async generator the running loop knows of (its first step registers it): the loop's
    ``shutdown_asyncgens()``, which ``asyncio.run`` and ``asyncio.Runner`` (so pytest-asyncio
    and anyio, as under Starlette's TestClient) call before closing, closes it, and its
    ``finally`` closes the session in its own loop. So a client left open when its loop ends
    leaves no unclosed session or socket behind. ``close()`` closes it first.
    """

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await session.close()

    generator = closer()
    with contextlib.suppress(StopIteration):  # it stopped at its ``yield``: armed
        generator.asend(None).send(None)
    return generator


def other_loop(bound: asyncio.AbstractEventLoop, doing: str) -> EventLoopMismatchError:
    if bound.is_closed():
        where = "a loop that has closed since (an earlier asyncio.run(), test or test client)"
    elif bound.is_running():
        where = "a loop running in another thread"
    else:
        where = "another loop, not running now"
    return EventLoopMismatchError(
        f"this PcsidClient was {doing} from an event loop it does not belong to: it was first "
        f"used in {where}. A client, like an aiohttp session, works in one event loop only: "
        "create one client per loop, inside it (e.g. in your app's lifespan or startup "
        "handler, not at import time), and close it there"
    )
