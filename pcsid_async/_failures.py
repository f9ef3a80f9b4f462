"""Our errors for an attempt that got no answer: a timeout, or a connection failure.

:func:`send_failure` decides whether the request may have reached the server (from what
the session's connector saw) and words the error.
Messages name the method, the path and aiohttp's reason (host and port at most), never a
header or a body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, TypeVar

import aiohttp

from ._deadlines import Deadline
from ._errors import APIConnectionError, APITimeoutError
from ._retrying import CallState
from ._session import _SendTrace
from ._stale import refused_unsent

__all__ = ["connection_error", "send_failure", "timeout_error"]

logger: Final = logging.getLogger("pcsid_async")


def send_failure(
    state: CallState[Any],
    exc: BaseException,
    trace: _SendTrace,
    traced: bool,
    deadline: Deadline | None,
    seconds: float | None,
) -> APIConnectionError | None:
    """Our error for an attempt whose send raised ``exc``, or ``None``: let ``exc`` through.

    The error's ``__cause__`` is set (raise it ``from`` that). ``traced``: the session is our
    own, whose connector filled in ``trace``; ``deadline`` (closed here) is the attempt's,
    of ``seconds``.
    """
    if deadline is not None and deadline.close(exc):
        # Our own deadline's cancellation: what asyncio.timeout raises, from it.
        expired = TimeoutError()
        expired.__cause__ = exc
        exc = expired
    elif not isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        if not isinstance(exc, (aiohttp.ClientError, OSError)):
            return None
        failure: APIConnectionError = connection_error(state, _reached(trace, traced, exc), exc)
        failure.__cause__ = exc
        return failure
    failure = timeout_error(state, _reached(trace, traced, exc), seconds)
    failure.__cause__ = exc
    return failure


def _reached(trace: _SendTrace, traced: bool, exc: BaseException) -> bool:
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return False  # no connection was ever established
    if traced:
        # One connection handed over (aiohttp re-sends only idempotent requests) and
        # its one write refused: not one byte went out.
        return trace.written > 0 and not (trace.written == 1 and refused_unsent(exc))
    return True  # a borrowed session cannot tell us: assume the worst


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
