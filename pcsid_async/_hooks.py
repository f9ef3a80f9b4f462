"""Event hooks for metrics: ``on_request`` / ``on_response`` and the events they receive.

Hooks are plain (sync) callables, called inline on the request's path: a counter or a
histogram update costs a few hundred nanoseconds, a coroutine and a task per request would
cost more than the work. A hook that needs I/O should hand the event to a queue.

An event carries no secret: no header, no body, no token, no OTP; its path is the
endpoint's template (the activity id is replaced by ``{activity_id}``), so it can label a
metric without growing its cardinality. A hook that raises is logged and ignored: metrics
never break a renewal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

import attrs

__all__ = [
    "RequestEvent",
    "RequestHook",
    "ResponseEvent",
    "ResponseHook",
    "describe",
    "emit",
    "request_event",
    "response_event",
]

logger: Final = logging.getLogger("pcsid_async")

# The fixed paths and the endpoint (method) names they belong to.
_ENDPOINTS: Final = {
    "/onboarding/renew-pcsid": "renew",
    "/onboarding/generate-csid": "generate_csid",
    "/onboarding/register-device": "register_device",
    "/onboarding/generate-csr": "generate_device_id",
}
_STATUS_TEMPLATE: Final = "/onboarding/{activity_id}/pcsid-status"


@attrs.frozen
class RequestEvent:
    """One attempt of a request, about to be sent (given to ``on_request``).

    Attributes:
        endpoint: the client method it serves: ``renew``, ``generate_csid``, ``get_status``,
            ``register_device``, ``generate_device_id`` (``other`` for anything else).
        method: the HTTP method.
        path: the path template below the base URL, e.g.
            ``/onboarding/{activity_id}/pcsid-status``.
        attempt: 1 for the first attempt, 2 for the first retry, ...

    """

    endpoint: str
    method: str
    path: str
    attempt: int


@attrs.frozen
class ResponseEvent:
    """How one attempt ended (given to ``on_response``): an answer, or no answer.

    Attributes:
        endpoint: as in :class:`RequestEvent`.
        method: the HTTP method.
        path: the path template.
        attempt: the attempt number.
        status_code: the HTTP status; ``None`` when no answer came (timeout, connection).
        elapsed: seconds from sending to the answer (or the failure).
        request_id: the server's request id header, if it sent one.
        error_type: the exception this attempt raised (``BadRequestError``,
            ``APITimeoutError``, ...), or ``None`` when it decoded to a result. A retried
            attempt has one too.

    """

    endpoint: str
    method: str
    path: str
    attempt: int
    status_code: int | None
    elapsed: float
    request_id: str | None = None
    error_type: type[BaseException] | None = None


RequestHook = Callable[[RequestEvent], object]
ResponseHook = Callable[[ResponseEvent], object]


def describe(path: str) -> tuple[str, str]:
    """The endpoint name and path template of a request path."""
    endpoint = _ENDPOINTS.get(path)
    if endpoint is not None:
        return endpoint, path
    if path.startswith("/onboarding/") and path.endswith("/pcsid-status"):
        return "get_status", _STATUS_TEMPLATE
    return "other", "/..."


_Event = TypeVar("_Event", RequestEvent, ResponseEvent)


def emit(hook: Callable[[_Event], object], event: _Event) -> None:
    """Call ``hook(event)``; an exception from it is logged and swallowed."""
    try:
        hook(event)
    except Exception:
        logger.warning("event hook %r raised; ignored", hook, exc_info=True)


class _Attempt(Protocol):
    """What the events read of the transport's per-call state."""

    method: str
    path: str
    attempt: int
    sent_at: float | None


def request_event(hook: RequestHook | None, state: _Attempt) -> None:
    """Start timing the attempt; tell ``hook`` (if any) it is about to be sent."""
    state.sent_at = time.perf_counter()
    if hook is not None:
        endpoint, template = describe(state.path)
        emit(hook, RequestEvent(endpoint, state.method, template, state.attempt))


def response_event(
    hook: ResponseHook | None,
    state: _Attempt,
    status: int | None,
    request_id: str | None,
    exc: BaseException | None,
) -> None:
    """Tell ``hook`` (if any) how the attempt ended: an answer, or the error it raised."""
    assert state.sent_at is not None
    elapsed, state.sent_at = time.perf_counter() - state.sent_at, None
    if exc is not None:  # an answer's status and request id ride on its error, if any
        status = getattr(exc, "status_code", None)
        request_id = getattr(exc, "request_id", None)
    if hook is not None:
        endpoint, template = describe(state.path)
        event = ResponseEvent(
            endpoint,
            state.method,
            template,
            state.attempt,
            status,
            elapsed,
            request_id,
            None if exc is None else type(exc),
        )
        emit(hook, event)
