"""What one device of a batch comes to: :class:`RenewalOutcome` and how errors map to it.

``_batch`` runs the batch; this module holds its data (:class:`RenewalRequest`,
:class:`OutcomeState`, :class:`RenewalOutcome`) and the pure rules that turn a request's
problem or a call's error into a device's state and message.

The outcome of each device (``OutcomeState``):

===========  ====================================================================================
RENEWED      GENERATED, and its activity SUCCEEDED when one was awaited
FAILED       an error answer (4xx; 5xx but 502/504), Status FAILED, a FAILED activity, bad
             input (nothing sent), 429 until the retries ran out, no connection at all
UNKNOWN      the request may have been processed but we do not know the result: a timeout or a
             dropped connection after sending, a gateway's 502 or 504, an unreadable or
             oversized answer, or the renewal went through but its activity could not be
             followed to the end. The OTP may be spent: check first.
SKIPPED      never sent: duplicate device id, OTP expired before its turn, token refused (401) or
             VAT refused (403) earlier in the batch, the API unreachable, client closed
===========  ====================================================================================
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Final, TypeVar

import attrs

from ._errors import (
    ActivityFailedError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    InvalidArgumentError,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._models import ActivityStatus, RenewalResult

__all__ = [
    "CHECK_HINT",
    "SEND_FAILURES",
    "OutcomeState",
    "RenewalOutcome",
    "RenewalRequest",
    "activity_failed",
    "as_request",
    "check_expiry",
    "restated",
    "send_failure",
]

_E = TypeVar("_E", bound=BaseException)

# What every "the OTP may be spent" message tells the operator to do.
CHECK_HINT: Final = "check the device before renewing it again (its OTP may be spent)"
# A gateway's 502 (bad upstream answer) or 504 (upstream too slow) comes after it may have
# forwarded the request: the backend may have processed it. The client cannot prove otherwise.
_GATEWAY_UNKNOWN: Final = frozenset({502, 504})
_GATEWAY_HINT: Final = "a gateway answered, and the backend may have processed it: " + CHECK_HINT
# The renewal POST's failures that become the device's outcome (anything else is a bug,
# reported as "unexpected" by the batch).
SEND_FAILURES: Final = (
    ClientClosedError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    APIConnectionError,
    ResponseDecodeError,
    APIStatusError,
    InvalidArgumentError,
)


@attrs.frozen(repr=False)
class RenewalRequest:
    """One device to renew in a batch: its id, its one-time password, optionally its VAT.

    Nothing is validated here: a bad value becomes that device's FAILED outcome, so one
    bad row never stops a batch. The ``repr`` masks the OTP.

    Attributes:
        device_id: the EGS unit's device id.
        otp: the one-time password from ZATCA's Fatoora portal (single use, one hour).
        vat: the VAT number for this device, if not the client's default.
        otp_expires_at: when the OTP expires (timezone-aware); once it has passed, the
            device is SKIPPED with :class:`OtpExpiredError` instead of being sent.

    """

    device_id: str
    otp: str
    vat: str | None = None
    otp_expires_at: dt.datetime | None = None

    def __repr__(self) -> str:
        expires = "" if self.otp_expires_at is None else f", otp_expires_at={self.otp_expires_at!r}"
        vat = "" if self.vat is None else f", vat={self.vat!r}"
        return f"RenewalRequest(device_id={self.device_id!r}, otp='***'{vat}{expires})"


class OutcomeState(enum.Enum):
    """The recorded outcome of one device in a batch (see the table in ``_outcomes``)."""

    RENEWED = "RENEWED"
    """The PCSID was renewed (and its activity, when awaited, SUCCEEDED)."""
    FAILED = "FAILED"
    """The renewal failed; ``error`` says why."""
    UNKNOWN = "UNKNOWN"
    """It may have been processed: the OTP may be spent. Check before retrying."""
    SKIPPED = "SKIPPED"
    """Never sent; ``error`` says why."""


@attrs.frozen(repr=False)
class RenewalOutcome:
    """The one outcome of one device of a batch.

    Attributes:
        request: the request (its ``repr`` masks the OTP).
        state: RENEWED, FAILED, UNKNOWN or SKIPPED.
        result: the renew answer, when one was read.
        activity: the final (or, after a timeout, the last seen) activity status, when the
            renewal started an activity and ``await_activities`` was set.
        error: why it is not RENEWED; ``None`` when it is.
        attempts: how many times the renewal POST was tried (0: never sent).
        elapsed: seconds from picking the device up to its outcome, activity included.

    """

    request: RenewalRequest
    state: OutcomeState
    result: RenewalResult | None
    activity: ActivityStatus | None
    error: PcsidError | None
    attempts: int
    elapsed: float

    @property
    def ok(self) -> bool:
        """Whether the device was renewed."""
        return self.state is OutcomeState.RENEWED

    @property
    def device_id(self) -> str:
        """The device's id (``request.device_id``)."""
        return self.request.device_id

    @property
    def error_codes(self) -> tuple[str, ...]:
        """The provider's ``ErrorCode`` values behind this outcome, if any, in order."""
        if isinstance(self.error, APIStatusError) and self.error.errors:
            return self.error.error_codes
        for errors in (
            self.result.errors if self.result is not None else (),
            self.activity.errors if self.activity is not None else (),
        ):
            if errors:
                return tuple(e.code for e in errors)
        return ()

    def __repr__(self) -> str:
        error = "" if self.error is None else f", error={self.error!r}"
        return (
            f"RenewalOutcome(device_id={self.device_id!r}, state={self.state.name}, "
            f"attempts={self.attempts}, elapsed={self.elapsed:.3f}{error})"
        )


def restated(exc: _E, message: str) -> _E:
    """A copy of ``exc`` (same class and attributes) saying ``message``, caused by ``exc``.

    Keeps the type and context (status code, error details, activity id) a caller or the CLI
    reads, while the message says what it means for this device.
    """
    new = type(exc).__new__(type(exc))
    new.__dict__.update(vars(exc))
    new.args = (message,)
    new.__cause__ = exc
    return new


def as_request(item: object) -> RenewalRequest:
    if isinstance(item, RenewalRequest):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return RenewalRequest(item[0], item[1])
    raise InvalidArgumentError(
        "renew_many: each request must be a RenewalRequest or a (device_id, otp) tuple, "
        f"got {type(item).__name__}"
        + (f" of length {len(item)}" if isinstance(item, tuple) else "")
    )


def check_expiry(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise InvalidArgumentError(
            f"otp_expires_at must be a datetime or None, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError("otp_expires_at must be timezone-aware (e.g. UTC)")
    return value


def send_failure(exc: PcsidError) -> tuple[OutcomeState, PcsidError]:
    """The state and error of a device whose renewal POST raised ``exc`` (a SEND_FAILURES)."""
    if isinstance(exc, ClientClosedError):
        return OutcomeState.SKIPPED, exc
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return OutcomeState.FAILED, exc
    if isinstance(exc, RateLimitError):
        return OutcomeState.FAILED, restated(
            exc,
            f"{exc}; still rate limited when the retries ran out. The OTP was not "
            "spent (a 429 is never processed): this device can be retried",
        )
    if isinstance(exc, APIConnectionError):
        return (OutcomeState.UNKNOWN if exc.may_have_reached_server else OutcomeState.FAILED), exc
    if isinstance(exc, ResponseDecodeError):
        answered = (
            "it may have been processed"
            if isinstance(exc, ResponseTooLargeError)
            else "the server answered success, so the renewal was probably processed"
        )
        return OutcomeState.UNKNOWN, restated(exc, f"{exc}; {answered}: {CHECK_HINT}")
    if isinstance(exc, APIStatusError) and exc.status_code in _GATEWAY_UNKNOWN:
        return OutcomeState.UNKNOWN, restated(exc, f"{exc}; {_GATEWAY_HINT}")
    return OutcomeState.FAILED, exc


def activity_failed(device_id: str, activity_id: str, status: ActivityStatus) -> PcsidError:
    """The error of a renewal that went through but whose activity did not succeed."""
    checks = ", ".join(c.value for c in status.failed_checks)
    pcsid = "" if status.pcsid_generated is None else f", PCSID {status.pcsid_generated.value}"
    return ActivityFailedError(
        f"device {device_id!r}: the renewal went through but PCSID generation activity "
        f"{activity_id} finished {status.state.value}{pcsid}"
        + (f"; failed checks: {checks}" if checks else ""),
        status=status,
    )
