"""The client's own ``aiohttp.ClientSession``: made by :func:`new_session` on first use.

Its connector (:class:`_Connector`) tells the transport how many connections a request
was handed (``_SendTrace``), which decides ``may_have_reached_server``.
"""

from __future__ import annotations

import contextvars
import logging
import ssl as ssl_module
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aiohttp
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from ._stale import descriptor, readable

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


# Requests aiohttp itself sends again, once, when a pooled connection turns out closed (the
# RFC 9112 retry; our retry policy covers them too): only the others need the look-ahead.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


_connect: Final = aiohttp.TCPConnector.connect
_NEW: Final = object()  # a connection not handed over before


class _Connector(aiohttp.TCPConnector):
    """The owned session's connector: it counts the connections handed to the request.

    aiohttp writes a request only on a connection ``connect`` handed over, so if that
    never happened, not one byte of the request went out. The write itself may come a
    loop turn later (aiohttp 3.12+ on Python < 3.12, or a trace callback that waits), so
    "handed over" is read as "may have been written" unless aiohttp refused the write
    (see _stale). A pooled connection the peer has already ended is dropped here, before
    any of the request is written to it, for a request aiohttp would not send again itself
    (a POST: the OTP's). (An aiohttp TraceConfig tells the same but costs
    a trace object and five signals per request: about a tenth of a call's CPU.)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Each connection handed over before, by its protocol: its socket's descriptor.
        self._handed: weakref.WeakKeyDictionary[object, int | None] = weakref.WeakKeyDictionary()

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await _connect(self, req, traces, timeout)
        handed = self._handed
        fd = handed.get(connection.protocol, _NEW)
        if req.method not in _IDEMPOTENT:
            # aiohttp hands out a pooled connection only while it is connected (as far as
            # the loop has read); the socket tells whether the peer has ended it since. A
            # new connection has nothing to look at. Each round takes a pooled connection
            # out for good, so this ends at a new one.
            while fd is not _NEW and readable(fd):  # type: ignore[arg-type]
                logger.debug("dropped a pooled connection the server had already closed")
                connection.close()
                connection = await _connect(self, req, traces, timeout)
                fd = handed.get(connection.protocol, _NEW)
        if fd is _NEW:
            handed[connection.protocol] = descriptor(connection)
        trace = _SENDING.get()
        if trace is not None:
            trace.written += 1
        return connection


def new_session(
    max_connections: int,
    *,
    ssl: ssl_module.SSLContext | bool,
    headers: Mapping[str, str] | None,
    timeout: aiohttp.ClientTimeout,
    trace_configs: Iterable[aiohttp.TraceConfig],
    proxy: URL | None,
    trust_env: bool,
) -> aiohttp.ClientSession:
    """The client's own session (inside the running loop), with our connector."""
    return aiohttp.ClientSession(
        connector=_Connector(limit=max_connections, ssl=ssl),
        headers=headers,
        timeout=timeout,
        trace_configs=list(trace_configs) or None,
        raise_for_status=False,
        proxy=proxy,
        trust_env=trust_env,
    )
