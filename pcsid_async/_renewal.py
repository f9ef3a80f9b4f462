"""One device of a batch, from its request to its one outcome: :class:`Renewer`.

The batch (``_batch``) hands each pulled request to its renewer, which checks it, consults
the journal, asks the circuit breakers (a 401 for the batch, a 403 per VAT, the unreachable
breaker of ``_breaker``), sends the renewal, follows its activity and records the outcome.
No problem of one device escapes :meth:`Renewer.outcome`; the rules that turn a problem
into a state and a message are ``_outcomes``'.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from . import _batch_journal
from ._breaker import UNREACHABLE_AFTER, UnreachableBreaker
from ._decode import scrub
from ._errors import (
    ActivityTimeoutError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    InvalidArgumentError,
    OtpExpiredError,
    PcsidError,
    PermissionDeniedError,
    ResponseDecodeError,
)
from ._journal import RenewalJournal
from ._models import ActivityStatus, RenewalResult
from ._outcomes import (
    CHECK_HINT,
    SEND_FAILURES,
    OutcomeState,
    RenewalOutcome,
    RenewalRequest,
    activity_failed,
    check_expiry,
    restated,
    send_failure,
)
from ._transport import CallStats
from ._validate import check_token_like

if TYPE_CHECKING:
    import asyncio
    from typing import TypeAlias

    from ._client import PcsidClient

    # A journal record's commit: its result is None once durable, else why it failed.
    Recorded: TypeAlias = asyncio.Future[BaseException | None]
    # An outcome and, with a journal, its record's commit: what the batch hands over.
    Handed: TypeAlias = tuple[RenewalOutcome, Recorded | None]

__all__ = ["Renewer"]

# A device's state, renew answer, activity status and error.
_Result = tuple[OutcomeState, RenewalResult | None, ActivityStatus | None, PcsidError | None]


class Renewer:
    """Turns each request of one batch into exactly one outcome; holds its circuit breakers."""

    def __init__(
        self,
        client: PcsidClient,
        *,
        await_activities: bool,
        activity_timeout: float | None,
        activity_interval: float,
        activity_max_interval: float,
        unreachable_after: int | None = UNREACHABLE_AFTER,
        journal: RenewalJournal | None = None,
        retry_unknown: bool = False,
    ) -> None:
        _batch_journal.check_journal(journal)
        self._client = client
        self.journal = journal
        self.commits = None if journal is None else _batch_journal.GroupCommitter(journal, client)
        self._retry_unknown = retry_unknown
        self._await = await_activities
        self._activity_timeout = activity_timeout
        self._interval = activity_interval
        self._max_interval = activity_max_interval
        self._auth_refused: tuple[str, AuthenticationError] | None = None
        self._vat_refused: dict[str, tuple[str, PermissionDeniedError]] = {}
        self._unreachable = UnreachableBreaker(unreachable_after)

    async def outcome(self, request: RenewalRequest, duplicate: bool) -> Handed:
        """Exactly one outcome for ``request``, whatever happens (cancellation aside).

        With a journal, also the future of its record's commit (see
        :meth:`GroupCommitter.record_soon`): hand the outcome over once that is done.
        """
        started = time.monotonic()
        stats = CallStats()
        result: RenewalResult | None = None
        activity: ActivityStatus | None = None
        error: PcsidError | None
        journal = self.journal
        if journal is not None and (duplicate or not isinstance(request.device_id, str)):
            journal = None  # a repeat is SKIPPED unrecorded (the first occurrence's row stands)
        if journal is not None:
            decision = journal.decide(request, retry_unknown=self._retry_unknown)
            if not decision.send:
                return _batch_journal.recorded_outcome(request, decision, OutcomeState), None
        try:
            state, result, activity, error = await self._renew_one(request, duplicate, stats)
        except Exception as exc:  # a bug or an exotic failure: still one outcome, no escape
            state = OutcomeState.UNKNOWN if stats.attempts else OutcomeState.FAILED
            text = scrub(str(exc), (self._client._token, str(request.otp)))
            error = PcsidError(
                f"unexpected {type(exc).__name__} while renewing device "
                f"{request.device_id!r}: {text}" + (f"; {CHECK_HINT}" if stats.attempts else "")
            )
            error.__cause__ = exc
        outcome = RenewalOutcome(
            request=request,
            state=state,
            result=result,
            activity=activity,
            error=error,
            attempts=stats.attempts,
            elapsed=time.monotonic() - started,
        )
        if journal is not None and self.commits is not None:
            return outcome, self.commits.record_soon(outcome)
        return outcome, None

    async def _renew_one(
        self, request: RenewalRequest, duplicate: bool, stats: CallStats
    ) -> _Result:
        failed, skipped = OutcomeState.FAILED, OutcomeState.SKIPPED
        try:
            device_id = check_token_like(request.device_id, "device_id")
        except InvalidArgumentError as exc:
            return failed, None, None, exc
        if duplicate:
            return (
                skipped,
                None,
                None,
                InvalidArgumentError(
                    f"duplicate device_id {device_id!r} in this batch; not sent "
                    "(only its first occurrence is sent)"
                ),
            )
        try:
            otp = check_token_like(request.otp, "otp")
            vat = None if request.vat is None else check_token_like(request.vat, "vat")
            expires = check_expiry(request.otp_expires_at)
        except InvalidArgumentError as exc:
            return failed, None, None, exc
        effective_vat = self._client.vat if vat is None else vat
        refused = self._refusal(device_id, effective_vat, expires)
        if refused is not None:
            return skipped, None, None, refused

        if self.commits is not None:  # durable before the POST can leave
            await self.commits.mark_sending(request, effective_vat)
        try:
            result = await self._send(device_id, otp, vat, stats)
        except SEND_FAILURES as exc:
            if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
                self._trip(device_id, effective_vat, exc)
            state, error = send_failure(exc)
            return state, None, None, error

        if not result.ok:
            details = "; ".join(str(e) for e in result.errors) or "no error details"
            return (
                failed,
                result,
                None,
                PcsidError(f"renewal of device {device_id!r} answered Status FAILED: {details}"),
            )
        if result.activity_id is None or not self._await:
            return OutcomeState.RENEWED, result, None, None
        return await self._follow(device_id, vat, effective_vat, result, result.activity_id)

    def _refusal(
        self, device_id: str, effective_vat: str, expires: dt.datetime | None
    ) -> PcsidError | None:
        """Why a valid device is not sent (a breaker is open, or its OTP expired), if so."""
        if self._auth_refused is not None:
            first, auth_error = self._auth_refused
            return restated(
                auth_error,
                f"not sent: the auth token was refused (401) for device {first!r} earlier "
                f"in this batch ({auth_error})",
            )
        if effective_vat in self._vat_refused:
            first, denied = self._vat_refused[effective_vat]
            return restated(
                denied,
                f"not sent: VAT {effective_vat} was refused (403) for device {first!r} "
                f"earlier in this batch ({denied})",
            )
        if self._unreachable.opened is not None:
            return restated(self._unreachable.opened, self._unreachable.reason())
        if expires is not None and expires <= dt.datetime.now(dt.timezone.utc):
            return OtpExpiredError(
                f"not sent: the OTP of device {device_id!r} expired at "
                f"{expires.isoformat(timespec='seconds')} before its turn"
            )
        return None

    async def _send(
        self, device_id: str, otp: str, vat: str | None, stats: CallStats
    ) -> RenewalResult:
        """The renewal POST, telling the unreachable breaker whether the server was reached."""
        breaker = self._unreachable
        try:
            result = await self._client.renew(device_id, otp, vat=vat, _stats=stats)
        except APIConnectionError as exc:
            if exc.may_have_reached_server:
                breaker.reached()
            else:
                breaker.failed(device_id, exc)
            raise
        except (APIStatusError, ResponseDecodeError):
            breaker.reached()
            raise
        breaker.reached()
        return result

    async def _follow(
        self,
        device_id: str,
        vat: str | None,
        effective_vat: str,
        result: RenewalResult,
        activity_id: str,
    ) -> _Result:
        """Await the renewal's activity; the renewal itself already went through."""
        went_through = (
            f"device {device_id!r} was renewed (Status GENERATED) but the final state of "
            f"its PCSID generation activity {activity_id} is unknown"
        )
        hint = f"check it with `pcsid-async status {activity_id}` before renewing again"
        try:
            status = await self._client.await_activity(
                activity_id,
                vat=vat,
                timeout=self._activity_timeout,
                interval=self._interval,
                max_interval=self._max_interval,
            )
        except ActivityTimeoutError as exc:
            return (
                OutcomeState.UNKNOWN,
                result,
                exc.last_status,
                restated(exc, f"{went_through}: {exc}; {hint}"),
            )
        except PcsidError as exc:
            if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
                self._trip(device_id, effective_vat, exc)
            return (
                OutcomeState.UNKNOWN,
                result,
                None,
                restated(exc, f"{went_through}: following it failed: {exc}; {hint}"),
            )
        if status.succeeded:
            return OutcomeState.RENEWED, result, status, None
        return OutcomeState.FAILED, result, status, activity_failed(device_id, activity_id, status)

    def _trip(
        self, device_id: str, vat: str, exc: AuthenticationError | PermissionDeniedError
    ) -> None:
        """Open a circuit breaker: a 401 for the whole batch, a 403 for one VAT."""
        if isinstance(exc, AuthenticationError):
            if self._auth_refused is None:
                self._auth_refused = (device_id, exc)
        else:
            self._vat_refused.setdefault(vat, (device_id, exc))
