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
from collections.abc import Callable
from typing import Final, TypeVar

import attrs

__all__ = ["RequestEvent", "RequestHook", "ResponseEvent", "ResponseHook", "describe", "emit"]

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
