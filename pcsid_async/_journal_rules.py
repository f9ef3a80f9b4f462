"""The journal's pure parts: OTP fingerprints, outcome records, "proved unspent", resume rules.

No I/O here: :mod:`pcsid_async._journal` stores what these functions compute.

Resume rules, for a device the journal already holds (``decide``):

==========================  ===========================================================
pending / SKIPPED / absent  sent
RENEWED                     not sent, whatever the OTP: the recorded outcome stands
UNKNOWN, same OTP           not sent (``INTERRUPTED`` or ``RECORDED``) unless
                            ``retry_unknown=True``
FAILED, same OTP            sent only when the failure proved the OTP unspent
UNKNOWN / FAILED, new OTP   sent: the operator fetched a fresh OTP
sending                     not sent (``IN_FLIGHT``): this run already sent it
==========================  ===========================================================
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._decode import scrub
from ._errors import (
    APIConnectionError,
    APIStatusError,
    InterruptedRenewalError,
    InvalidArgumentError,
    OtpExpiredError,
    RateLimitError,
)

if TYPE_CHECKING:
    from ._batch import RenewalOutcome

PENDING: Final = "pending"
SENDING: Final = "sending"
FINAL_STATES: Final = frozenset({"RENEWED", "FAILED", "UNKNOWN", "SKIPPED"})
STATES: Final = (PENDING, SENDING, "RENEWED", "FAILED", "UNKNOWN", "SKIPPED")


class Action(enum.Enum):
    """What to do with one device of a resumed batch."""

    SEND = "send"
    """Send it (new device, new OTP, SKIPPED or pending before, or a provably unspent OTP)."""
    RECORDED = "recorded"
    """Do not send: the recorded outcome (``Decision.record``) stands."""
    INTERRUPTED = "interrupted"
    """Do not send: an earlier run was interrupted while it was in flight (UNKNOWN)."""
    IN_FLIGHT = "in_flight"
    """Do not send: this run already marked it ``sending`` (a repeated device id)."""


@attrs.frozen
class Decision:
    """The journal's answer for one request: send it, or what stands instead.

    Attributes:
        action: see :class:`Action`.
        reason: one sentence for logs and reports (never a secret).
        state: the row's state before this run touched it (``None``: not in the journal).
        record: the recorded outcome record, when there is one.

    """

    action: Action
    reason: str
    state: str | None = None
    record: Mapping[str, Any] | None = None

    @property
    def send(self) -> bool:
        """Whether the request should be sent."""
        return self.action is Action.SEND


def fingerprint(key: bytes, otp: object) -> str | None:
    """The keyed fingerprint (HMAC-SHA256, hex) of an OTP; ``None`` when it is not a string."""
    if not isinstance(otp, str):
        return None
    return hmac.digest(key, otp.encode("utf-8", "surrogatepass"), "sha256").hex()


def otp_unspent(outcome: RenewalOutcome) -> bool:
    """Whether ``outcome`` proves its OTP was not spent, so sending it again is safe.

    True for: SKIPPED (never sent); an outcome whose POST was never tried (``attempts == 0``);
    a 429 after the retries (a 429 is never processed); a connection error that provably
    never wrote the request; a client-side validation error; an OTP that expired before its
    turn. False for everything else, including a 400 ``Invalid-OTP``, 401/403 (the request
    reached the server), UNKNOWN and RENEWED.
    """
    state = outcome.state.value
    if state == "SKIPPED":
        return True
    if state != "FAILED":
        return False
    error = outcome.error
    if outcome.attempts == 0:
        return True
    if isinstance(error, (RateLimitError, InvalidArgumentError, OtpExpiredError)):
        return True
    return isinstance(error, APIConnectionError) and not error.may_have_reached_server


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def outcome_record(
    outcome: RenewalOutcome,
    *,
    default_vat: str,
    secrets: Iterable[str] = (),
    finished_at: str | None = None,
) -> dict[str, Any]:
    """The JSON object recorded for one outcome: everything a results line needs, no secret.

    The request's OTP and every string in ``secrets`` (pass the auth token) are scrubbed
    from the error message. ``finished_at`` defaults to now (a group commit passes its own
    time, taken once for the group).
    """
    error = outcome.error
    activity = outcome.activity
    result = outcome.result
    otp = outcome.request.otp
    hidden = (*secrets, otp) if isinstance(otp, str) else tuple(secrets)
    pcsid: str | None = None
    if activity is not None and activity.pcsid_generated is not None:
        pcsid = activity.pcsid_generated.value
    elif result is not None and (outcome.ok or not result.ok):
        pcsid = result.status.value
    status = error if isinstance(error, APIStatusError) else None
    vat = outcome.request.vat
    return {
        "device_id": outcome.device_id,
        "vat": vat if isinstance(vat, str) else default_vat,
        "ok": outcome.ok,
        "state": outcome.state.value,
        "error_type": None if error is None else type(error).__name__,
        "error_message": None if error is None else scrub(str(error), hidden),
        "error_codes": list(outcome.error_codes),
        "status_code": None if status is None else status.status_code,
        "request_id": None if status is None else status.request_id,
        "pcsid_generated": pcsid,
        "activity_id": result.activity_id if result is not None else None,
        "activity_state": activity.state.value if activity is not None else None,
        "failed_checks": [] if activity is None else [c.value for c in activity.failed_checks],
        "attempts": outcome.attempts,
        "elapsed_s": round(outcome.elapsed, 3),
        "otp_unspent": otp_unspent(outcome),
        "finished_at": finished_at or now(),
    }


def interrupted_record(device_id: str, vat: str | None, sent_at: str | None) -> dict[str, Any]:
    """The UNKNOWN record of a device found ``sending`` when a run begins."""
    error = InterruptedRenewalError(
        f"device {device_id!r}: its renewal was in flight when an earlier run ended "
        f"(marked sending at {sent_at}); it may have been processed: check the device before "
        "renewing it again (its OTP may be spent)"
    )
    return {
        "device_id": device_id,
        "vat": vat,
        "ok": False,
        "state": "UNKNOWN",
        "error_type": type(error).__name__,
        "error_message": str(error),
        "error_codes": [],
        "status_code": None,
        "request_id": None,
        "pcsid_generated": None,
        "activity_id": None,
        "activity_state": None,
        "failed_checks": [],
        "attempts": 1,
        "elapsed_s": None,
        "otp_unspent": False,
        "finished_at": now(),
    }


def decide(
    state: str | None,
    record: Mapping[str, Any] | None,
    *,
    same_otp: bool,
    unspent: bool,
    retry_unknown: bool,
) -> Decision:
    """The resume rule (table in the module docstring) for one journal row."""
    if state is None or state in (PENDING, "SKIPPED"):
        return Decision(Action.SEND, "not renewed yet", state, record)
    if state == SENDING:
        return Decision(Action.IN_FLIGHT, "already sent in this run", state, record)
    if state == "RENEWED":
        return Decision(Action.RECORDED, "already renewed", state, record)
    if not same_otp:
        return Decision(Action.SEND, f"{state} before; the row carries a new OTP", state, record)
    if state == "UNKNOWN":
        if retry_unknown:
            return Decision(Action.SEND, "UNKNOWN before; retry_unknown opted in", state, record)
        interrupted = record is not None and record.get("error_type") == "InterruptedRenewalError"
        action = Action.INTERRUPTED if interrupted else Action.RECORDED
        return Decision(action, "UNKNOWN before with the same OTP (it may be spent)", state, record)
    if unspent:
        return Decision(Action.SEND, "FAILED before; the OTP was provably unspent", state, record)
    return Decision(Action.RECORDED, "FAILED before with the same OTP (spent)", state, record)
