"""The exceptions pcsid-async raises: one root, context as attributes, never secrets.

The tree::

    PcsidError
    ├── InvalidArgumentError      also a ValueError: a bad argument, refused before any request
    ├── ClientClosedError         also a RuntimeError: the client was closed
    ├── EventLoopMismatchError    also a RuntimeError: used from an event loop it does not belong to
    ├── APIConnectionError        no HTTP answer (DNS, refused, reset, TLS):
    │   │                         .may_have_reached_server
    │   └── APITimeoutError       no answer in time
    ├── APIStatusError            an HTTP answer with an error status: .status_code, .errors,
    │   │                         .body_excerpt (<= 500 chars), .request_id, .retry_after,
    │   │                         .hint (what to do, from the error codes)
    │   ├── BadRequestError       400
    │   ├── AuthenticationError   401
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError         404
    │   ├── RateLimitError        429, .retry_after
    │   └── InternalServerError   500 and every other 5xx
    ├── ResponseDecodeError       a success body that is not the documented shape
    │   └── ResponseTooLargeError an answer body over max_response_bytes: .limit
    ├── ActivityTimeoutError      await_activity's deadline passed: .activity_id, .last_status
    ├── ActivityFailedError       await_activity(raise_on_failure=True) saw FAILED: .status
    ├── OtpExpiredError           a batch request's OTP expired before its turn: nothing was sent
    ├── InterruptedRenewalError   in flight when an earlier run ended: its OTP may be spent
    └── JournalError              a renewal journal is unusable or in use by another run: .path

Any other error status (3xx, 409, 422 ...) is a plain :class:`APIStatusError`.

No exception built here carries the auth token or an OTP: messages are made from the method,
the path, the status and the server's error details, and the client scrubs the secrets of the
call from server-provided text before it gets here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._hints import hint_for

if TYPE_CHECKING:
    from ._models import ActivityStatus, ErrorDetail

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ActivityFailedError",
    "ActivityTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "EventLoopMismatchError",
    "InternalServerError",
    "InterruptedRenewalError",
    "InvalidArgumentError",
    "JournalError",
    "NotFoundError",
    "OtpExpiredError",
    "PcsidError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
]


class PcsidError(Exception):
    """The root of every error pcsid-async raises on purpose."""


class InvalidArgumentError(PcsidError, ValueError):
    """Raised when an argument is refused before any request is made.

    The message names the argument; it never repeats a secret value.
    """


class ClientClosedError(PcsidError, RuntimeError):
    """Raised when a closed :class:`~pcsid_async.PcsidClient` is asked to do work."""


class EventLoopMismatchError(PcsidError, RuntimeError):
    """Raised when a client is used (or closed) from an event loop it does not belong to.

    A client binds to the first running loop that uses it, like an ``aiohttp.ClientSession``
    (or an ``httpx.AsyncClient``): its connections belong to that loop. Nothing is sent.
    """


class APIConnectionError(PcsidError):
    """Raised when no HTTP answer arrived: DNS, refused or reset connections, TLS failures.

    Attributes:
        method: the HTTP method of the failed request.
        path: the path of the failed request, relative to the base URL.
        may_have_reached_server: ``False`` only when the request provably was never written
            to the connection (so a single-use OTP it carried is still unspent); ``True``
            when it may have been received and processed.

    """

    def __init__(
        self, message: str, *, method: str, path: str, may_have_reached_server: bool
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.may_have_reached_server = may_have_reached_server


class APITimeoutError(APIConnectionError):
    """Raised when the server did not answer within the client's timeout."""


class APIStatusError(PcsidError):
    """Raised for an HTTP answer with an error status.

    Attributes:
        status_code: the HTTP status.
        method: the HTTP method of the request.
        path: the request's path, relative to the base URL.
        errors: the server's error details, in the order sent (possibly empty).
        body_excerpt: at most 500 characters of the body, secrets of the call removed.
        request_id: the server's request id header, if it sent one.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.

    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        errors: Sequence[ErrorDetail] = (),
        body_excerpt: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.path = path
        self.errors: tuple[ErrorDetail, ...] = tuple(errors)
        self.body_excerpt = body_excerpt
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def error_codes(self) -> tuple[str, ...]:
        """The ``ErrorCode`` of each error detail, in order."""
        return tuple(e.code for e in self.errors)

    @property
    def hint(self) -> str | None:
        """What to do about this answer, from its error codes (or status), or ``None``."""
        return hint_for(self.error_codes, status_code=self.status_code)


class BadRequestError(APIStatusError):
    """Raised for HTTP 400: validation failed (bad device, spent or expired OTP, ...)."""


class AuthenticationError(APIStatusError):
    """Raised for HTTP 401: the auth token is missing, invalid or revoked."""


class PermissionDeniedError(APIStatusError):
    """Raised for HTTP 403: the token's user is not an Admin for that VAT."""


class NotFoundError(APIStatusError):
    """Raised for HTTP 404: the path does not exist (usually a wrong ``base_url``)."""


class RateLimitError(APIStatusError):
    """Raised for HTTP 429 once retries are exhausted, or at once for a too-long ``Retry-After``."""


class InternalServerError(APIStatusError):
    """Raised for HTTP 500 (other than a failed activity's answer) and every other 5xx."""


class ResponseDecodeError(PcsidError):
    """Raised when a success answer's body is not the documented shape.

    Attributes:
        reason: what was wrong, naming the wire field (``Status: missing``).
        body_excerpt: at most 500 characters of the body, secrets of the call removed.
        status_code: the HTTP status of the answer, when there was one.

    """

    def __init__(self, reason: str, *, body_excerpt: str = "", status_code: int | None = None):
        super().__init__(f"undecodable response: {reason}")
        self.reason = reason
        self.body_excerpt = body_excerpt
        self.status_code = status_code


class ResponseTooLargeError(ResponseDecodeError):
    """Raised when an answer's body (after decompression) is over ``max_response_bytes``.

    Reading stops at the cap, so a compressed bomb costs at most the cap in memory. The
    retry rules are those of any undecodable answer: the request was answered, so an OTP
    POST may have been processed.

    Attributes:
        limit: the cap, in bytes.
        method: the HTTP method of the request.
        path: the request's path, relative to the base URL.

    """

    def __init__(self, *, limit: int, method: str, path: str, status_code: int | None = None):
        super().__init__(
            f"{method} {path}: the answer body is over max_response_bytes={limit} "
            "(after decompression); reading stopped at the cap",
            status_code=status_code,
        )
        self.limit = limit
        self.method = method
        self.path = path


class ActivityTimeoutError(PcsidError):
    """Raised when ``await_activity``'s deadline passed before the activity finished.

    The activity may still finish: call ``await_activity`` again with the same id to resume.

    Attributes:
        activity_id: the activity that was being awaited.
        last_status: the last status seen, or ``None`` if no poll succeeded.

    """

    def __init__(
        self, message: str, *, activity_id: str, last_status: ActivityStatus | None
    ) -> None:
        super().__init__(message)
        self.activity_id = activity_id
        self.last_status = last_status


class ActivityFailedError(PcsidError):
    """Raised by ``await_activity(raise_on_failure=True)`` when the activity ended FAILED.

    Attributes:
        status: the final :class:`~pcsid_async.ActivityStatus`.

    """

    def __init__(self, message: str, *, status: ActivityStatus) -> None:
        super().__init__(message)
        self.status = status


class OtpExpiredError(PcsidError):
    """Raised (as a batch outcome's error) when a request's OTP expired before its turn.

    Nothing was sent for that device, so its OTP was not spent on a doomed request.
    """


class InterruptedRenewalError(PcsidError):
    """Recorded (as an UNKNOWN outcome's error) for a renewal in flight when a run ended.

    The journal found the device in ``sending`` when the next run began: its POST may have
    reached the server, so its OTP may be spent. It is not sent again with the same OTP.
    """


class JournalError(PcsidError):
    """Raised when a renewal journal cannot be used: nothing is sent.

    Not a journal, a journal of another VAT or schema version, a corrupt database, or a
    journal another run holds at this moment.

    Attributes:
        path: the journal file.

    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
