"""What one request carries through the transport, and the base URL every request starts from.

- :class:`CallStats` and :class:`_CallState`: per-call bookkeeping threaded through retries.
- :class:`_SendTrace`, ``_SENDING`` and :class:`_Connector`: whether aiohttp began writing
  the request in flight (so whether it may have reached the server).
- :func:`_describe`: aiohttp's connection errors in words that name no secret.
- :func:`check_base_url`: https only (plain http for loopback), no credentials, no query.
"""

from __future__ import annotations

import contextvars
import ipaddress
import ssl as ssl_module
from collections.abc import Callable, Mapping
from typing import Final, Generic, TypeVar

import aiohttp
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from ._errors import PcsidError

__all__ = ["CallStats", "check_base_url"]

_T = TypeVar("_T")


class CallStats:
    """Filled in by :meth:`Transport.call` for callers that report attempts (the batch)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


class _SendTrace:
    """Per-request trace context: whether aiohttp started writing this request."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = False


# The request the current task is sending through our own session (set around each send).
_SENDING: Final[contextvars.ContextVar[_SendTrace | None]] = contextvars.ContextVar(
    "pcsid_async_sending", default=None
)


# When the call whose retries backoff is running began (set around backoff by Transport.call).
_CALL_STARTED: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "pcsid_async_call_started", default=None
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


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name host and port, never headers or bodies.
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without answering"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _CallState(Generic[_T]):
    """Per-call state threaded through the retries of one logical call."""

    __slots__ = (
        "attempt",
        "body",
        "decode",
        "handover",
        "headers",
        "method",
        "path",
        "replay",
        "safe",
        "started",
        "stats",
        "timeout",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        decode: Callable[[int, Mapping[str, str], bytes], _T],
        safe: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.decode = decode
        self.safe = safe
        self.attempt = 0
        self.timeout: aiohttp.ClientTimeout | None = None
        self.stats: CallStats | None = None
        self.replay: PcsidError | None = None
        self.handover = False  # a retryable failure goes to backoff (first attempt only)
        self.started = 0.0  # time.monotonic() at the call's start, when it may retry


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str | URL, *, ssl: ssl_module.SSLContext | bool) -> URL:
    """Validate ``base_url``: https (http only for loopback hosts), a host, no query."""
    try:
        url = URL(str(base_url))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"base_url is not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError("base_url must be an absolute https:// URL")
    loopback = _is_loopback_host(url.host)
    if url.scheme == "http" and not loopback:
        raise ValueError("base_url must use https (plain http is allowed only for loopback hosts)")
    if url.user or url.password:
        raise ValueError("base_url must not carry credentials")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    if ssl is False and not loopback:
        raise ValueError("ssl=False (no certificate verification) is allowed only for loopback")
    return url.with_path(url.path.rstrip("/")) if url.path != "/" else url.with_path("")
