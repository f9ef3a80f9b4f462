"""The client's own ``aiohttp.ClientSession``: made by :func:`new_session` on first use.

Its connector (:class:`_Connector`) tells the transport how many connections a request
was handed (``_SendTrace``), which decides ``may_have_reached_server``.
"""

from __future__ import annotations

import contextvars
import logging
import ssl as ssl_module
import weakref
from collections.abc import Iterable
from typing import Any, Final

import aiohttp
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from ._stale import peer_ended

__all__ = ["new_session"]

logger: Final = logging.getLogger("pcsid_async")


class _SendTrace:
    """Per-request trace context: how many connections aiohttp was handed for this request."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = 0


# The request the current task is sending through our own session (set around each send).
_SENDING: Final[contextvars.ContextVar[_SendTrace | None]] = contextvars.ContextVar(
    "pcsid_async_sending", default=None
)


class _Connector(aiohttp.TCPConnector):
    """The owned session's connector: it counts the connections handed to the request.

    aiohttp writes a request only on a connection ``connect`` handed over, so if that
    never happened, not one byte of the request went out. The write itself may come a
    loop turn later (aiohttp 3.12+ on Python < 3.12, or a trace callback that waits), so
    "handed over" is read as "may have been written" unless aiohttp refused the write
    (see _stale). A pooled connection the peer has already ended is dropped here, before
    any of the request is written to it. (An aiohttp TraceConfig tells the same but costs
    a trace object and five signals per request: about a tenth of a call's CPU.)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handed: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        # Each round takes a pooled connection out for good, so this ends at a new one.
        while connection.protocol in self._handed and peer_ended(connection):
            logger.debug("dropped a pooled connection the server had already closed")
            connection.close()
            connection = await super().connect(req, traces, timeout)
        self._handed.add(connection.protocol)
        trace = _SENDING.get()
        if trace is not None:
            trace.written += 1
        return connection


def new_session(
    max_connections: int,
    *,
    ssl: ssl_module.SSLContext | bool,
    timeout: aiohttp.ClientTimeout,
    trace_configs: Iterable[aiohttp.TraceConfig],
    proxy: URL | None,
    trust_env: bool,
) -> aiohttp.ClientSession:
    """The client's own session (inside the running loop), with our connector."""
    return aiohttp.ClientSession(
        connector=_Connector(limit=max_connections, ssl=ssl),
        timeout=timeout,
        trace_configs=list(trace_configs) or None,
        raise_for_status=False,
        proxy=proxy,
        trust_env=trust_env,
    )
