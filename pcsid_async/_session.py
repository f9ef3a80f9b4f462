"""The client's own ``aiohttp.ClientSession``: made by :func:`new_session` on first use.

Its connector (:class:`_Connector`) tells the transport whether a request began to be
written (``_transport._SendTrace``), which decides ``may_have_reached_server``.
"""

from __future__ import annotations

import contextvars
import ssl as ssl_module
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

if TYPE_CHECKING:
    from ._transport import _SendTrace

__all__ = ["new_session"]

# The request the current task is sending through our own session (set around each send).
_SENDING: Final[contextvars.ContextVar[_SendTrace | None]] = contextvars.ContextVar(
    "pcsid_async_sending", default=None
)


class _Connector(aiohttp.TCPConnector):
    """The owned session's connector: it marks the request in flight as written.

    aiohttp writes the request line and headers as soon as ``connect`` hands over a
    connection, with no suspension in between, so "got a connection" is "began writing":
    if it never happened, not one byte of the request went out. (An aiohttp TraceConfig
    tells the same but costs a trace object and five signals per request: about a tenth
    of a call's CPU.)
    """

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        trace = _SENDING.get()
        if trace is not None:
            trace.written = True
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
