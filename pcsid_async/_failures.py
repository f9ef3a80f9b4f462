"""Our errors for an attempt that got no answer: a timeout, or a connection failure.

The transport decides whether the request may have reached the server; these word it.
Messages name the method, the path and aiohttp's reason (host and port at most), never a
header or a body.
"""

from __future__ import annotations

import logging
from typing import Any, Final, TypeVar

import aiohttp

from ._errors import APIConnectionError, APITimeoutError
from ._retrying import CallState

__all__ = ["connection_error", "timeout_error"]

logger: Final = logging.getLogger("pcsid_async")


def timeout_error(state: CallState[Any], reached: bool, seconds: float | None) -> APITimeoutError:
    """No answer within the attempt's ``seconds``."""
    return _failure(APITimeoutError, state, reached, "timeout", f"no answer within {seconds} s")


def connection_error(
    state: CallState[Any], reached: bool, exc: BaseException
) -> APIConnectionError:
    """The connection failed (``exc``: aiohttp's error, or an ``OSError``)."""
    return _failure(APIConnectionError, state, reached, type(exc).__name__, _describe(exc))


_E = TypeVar("_E", bound=APIConnectionError)


def _failure(kind: type[_E], state: CallState[Any], reached: bool, what: str, detail: str) -> _E:
    logger.debug(
        "%s %s -> %s (attempt %d, may have reached server: %s)",
        state.method,
        state.path,
        what,
        state.attempt,
        reached,
    )
    return kind(
        f"{state.method} {state.path}: {detail}"
        + (" (the request may have been processed)" if reached else ""),
        method=state.method,
        path=state.path,
        may_have_reached_server=reached,
    )


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name host and port, never headers or bodies.
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without answering"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
