"""Batch renewal of many devices (``renew_many``); the top of the client's layers.

How a batch runs:

* A fixed pool of ``min(concurrency, max_connections)`` worker tasks pulls requests from the
  caller's (sync or async) iterable under a lock, one at a time, so the source is read
  lazily: memory grows with the pool, not with the number of devices. Only the set of device
  ids already seen grows with N (it is what detects duplicates).
* Each worker turns its request into exactly one :class:`RenewalOutcome` and hands it to
  the consumer through a bounded queue; no per-device problem ever escapes.
* The async generator owns every worker task: leaving the iteration early (``break`` then
  garbage collection, ``aclose()``, or cancellation of the consumer) cancels the workers and
  waits for them, so nothing is left running.
* Pacing is the transport's: every request passes its concurrency gate and its pacer, so the
  client's ``rate_limit`` holds and a 429/503 ``Retry-After`` pauses the whole batch. Re-sending
  a POST is the transport's decision too (a 429, or provably never sent); the batch never
  sends a device twice.
* Circuit breakers: a 401 stops every later device (SKIPPED), a 403 every later device of
  that VAT, and ``unreachable_after`` devices in a row that provably never reached the
  server every later device (``_breaker``).

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

import asyncio
import datetime as dt
import enum
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Final, TypeVar

import attrs

from . import _batch_journal
from ._breaker import UNREACHABLE_AFTER, UnreachableBreaker, check_threshold
from ._client import check_positive, check_token_like
from ._decode import scrub
from ._errors import (
    ActivityFailedError,
    ActivityTimeoutError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    InvalidArgumentError,
    OtpExpiredError,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._journal import RenewalJournal
from ._models import ActivityStatus, RenewalResult
from ._polling import PollingClient
from ._transport import CallStats

__all__ = ["OutcomeState", "PcsidClient", "RenewalOutcome", "RenewalRequest"]

_E = TypeVar("_E", bound=BaseException)
_END: Final = object()

# A worker still running this long after its cancellation is cancelled again.
_RECANCEL_AFTER: Final = 1.0
# What every "the OTP may be spent" message tells the operator to do.
_CHECK_HINT: Final = "check the device before renewing it again (its OTP may be spent)"
# A gateway's 502 (bad upstream answer) or 504 (upstream too slow) comes after it may have
# forwarded the request: the backend may have processed it. The client cannot prove otherwise.
_GATEWAY_UNKNOWN: Final = frozenset({502, 504})
_GATEWAY_HINT: Final = "a gateway answered, and the backend may have processed it: " + _CHECK_HINT


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
    """The recorded outcome of one device in a batch (see the table in ``_batch``)."""

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


def _restated(exc: _E, message: str) -> _E:
    """A copy of ``exc`` (same class and attributes) saying ``message``, caused by ``exc``.

    Keeps the type and context (status code, error details, activity id) a caller or the CLI
    reads, while the message says what it means for this device.
    """
    new = type(exc).__new__(type(exc))
    new.__dict__.update(vars(exc))
    new.args = (message,)
    new.__cause__ = exc
    return new


def _as_request(item: object) -> RenewalRequest:
    if isinstance(item, RenewalRequest):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return RenewalRequest(item[0], item[1])
    raise InvalidArgumentError(
        "renew_many: each request must be a RenewalRequest or a (device_id, otp) tuple, "
        f"got {type(item).__name__}"
        + (f" of length {len(item)}" if isinstance(item, tuple) else "")
    )


def _check_expiry(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise InvalidArgumentError(
            f"otp_expires_at must be a datetime or None, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError("otp_expires_at must be timezone-aware (e.g. UTC)")
    return value


class _Batch:
    """The shared state of one ``renew_many`` run: the source, seen ids, circuit breakers."""

    def __init__(
        self,
        client: PcsidClient,
        requests: Iterable[RenewalRequest | tuple[str, str]]
        | AsyncIterable[RenewalRequest | tuple[str, str]],
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
        self._requests = requests
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        self._started = False
        self._lock = asyncio.Lock()
        self._exhausted = False
        self.error: BaseException | None = None  # the source failed: raised after the rest
        self._seen: set[str] = set()
        self._await = await_activities
        self._activity_timeout = activity_timeout
        self._interval = activity_interval
        self._max_interval = activity_max_interval
        self._auth_refused: tuple[str, AuthenticationError] | None = None
        self._vat_refused: dict[str, tuple[str, PermissionDeniedError]] = {}
        self._unreachable = UnreachableBreaker(unreachable_after)

    # --- the source --------------------------------------------------------------------------

    async def _pull(self) -> object:
        """The next raw item, or ``_END``."""
        if not self._started:
            self._started = True
            if isinstance(self._requests, AsyncIterable):
                self._async = aiter(self._requests)
            else:
                self._sync = iter(self._requests)
        if self._async is not None:
            return await anext(self._async, _END)
        assert self._sync is not None
        return next(self._sync, _END)

    async def next_request(self) -> tuple[RenewalRequest, bool] | None:
        """The next request and whether it repeats an earlier device id; ``None`` at the end.

        Pulled under a lock (an async iterator must not be entered twice at once), and the
        duplicate check happens under it too, so "first occurrence" means source order.
        """
        async with self._lock:
            if self._exhausted:
                return None
            try:
                item = await self._pull()
                if item is _END:
                    self._exhausted = True
                    return None
                request = _as_request(item)
            except Exception as exc:  # the caller's iterable failed: stop pulling, report it
                self._exhausted = True
                self.error = exc
                return None
            device_id: object = request.device_id  # typed str, but callers send anything
            if not isinstance(device_id, str):
                return request, False  # refused by validation, never deduplicated
            duplicate = device_id in self._seen
            self._seen.add(device_id)
            return request, duplicate

    async def work(self, queue: asyncio.Queue[RenewalOutcome | None]) -> None:
        """One worker: pull, renew, hand over the outcome; until the source ends."""
        try:
            while (pulled := await self.next_request()) is not None:
                await queue.put(await self.outcome(*pulled))
        except Exception as exc:  # pragma: no cover - next_request and outcome catch all
            self.error = self.error or exc
        await queue.put(None)

    # --- one device --------------------------------------------------------------------------

    async def outcome(self, request: RenewalRequest, duplicate: bool) -> RenewalOutcome:
        """Exactly one outcome for ``request``, whatever happens (cancellation aside)."""
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
                return _batch_journal.recorded_outcome(request, decision, OutcomeState)
        try:
            state, result, activity, error = await self._renew_one(request, duplicate, stats)
        except Exception as exc:  # a bug or an exotic failure: still one outcome, no escape
            state = OutcomeState.UNKNOWN if stats.attempts else OutcomeState.FAILED
            text = scrub(str(exc), (self._client._token, str(request.otp)))
            error = PcsidError(
                f"unexpected {type(exc).__name__} while renewing device "
                f"{request.device_id!r}: {text}" + (f"; {_CHECK_HINT}" if stats.attempts else "")
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
            await self.commits.record(outcome)
        return outcome

    async def _renew_one(
        self, request: RenewalRequest, duplicate: bool, stats: CallStats
    ) -> tuple[OutcomeState, RenewalResult | None, ActivityStatus | None, PcsidError | None]:
        failed, skipped, unknown = OutcomeState.FAILED, OutcomeState.SKIPPED, OutcomeState.UNKNOWN
        client = self._client
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
            expires = _check_expiry(request.otp_expires_at)
        except InvalidArgumentError as exc:
            return failed, None, None, exc
        effective_vat = client.vat if vat is None else vat
        if self._auth_refused is not None:
            first, auth_error = self._auth_refused
            return (
                skipped,
                None,
                None,
                _restated(
                    auth_error,
                    f"not sent: the auth token was refused (401) for device {first!r} earlier "
                    f"in this batch ({auth_error})",
                ),
            )
        if effective_vat in self._vat_refused:
            first, denied = self._vat_refused[effective_vat]
            return (
                skipped,
                None,
                None,
                _restated(
                    denied,
                    f"not sent: VAT {effective_vat} was refused (403) for device {first!r} "
                    f"earlier in this batch ({denied})",
                ),
            )
        if self._unreachable.opened is not None:
            return (
                skipped,
                None,
                None,
                _restated(self._unreachable.opened, self._unreachable.reason()),
            )
        if expires is not None and expires <= dt.datetime.now(dt.timezone.utc):
            return (
                skipped,
                None,
                None,
                OtpExpiredError(
                    f"not sent: the OTP of device {device_id!r} expired at "
                    f"{expires.isoformat(timespec='seconds')} before its turn"
                ),
            )

        if self.commits is not None:  # durable before the POST can leave
            await self.commits.mark_sending(request, effective_vat)
        try:
            result = await self._send(device_id, otp, vat, stats)
        except ClientClosedError as exc:
            return skipped, None, None, exc
        except (AuthenticationError, PermissionDeniedError) as exc:
            self._trip(device_id, effective_vat, exc)
            return failed, None, None, exc
        except RateLimitError as exc:
            return (
                failed,
                None,
                None,
                _restated(
                    exc,
                    f"{exc}; still rate limited when the retries ran out. The OTP was not "
                    "spent (a 429 is never processed): this device can be retried",
                ),
            )
        except APIConnectionError as exc:
            return (unknown if exc.may_have_reached_server else failed), None, None, exc
        except ResponseDecodeError as exc:
            answered = (
                "it may have been processed"
                if isinstance(exc, ResponseTooLargeError)
                else "the server answered success, so the renewal was probably processed"
            )
            return unknown, None, None, _restated(exc, f"{exc}; {answered}: {_CHECK_HINT}")
        except APIStatusError as exc:
            if exc.status_code in _GATEWAY_UNKNOWN:
                return unknown, None, None, _restated(exc, f"{exc}; {_GATEWAY_HINT}")
            return failed, None, None, exc
        except InvalidArgumentError as exc:
            return failed, None, None, exc

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
    ) -> tuple[OutcomeState, RenewalResult | None, ActivityStatus | None, PcsidError | None]:
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
                _restated(exc, f"{went_through}: {exc}; {hint}"),
            )
        except PcsidError as exc:
            if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
                self._trip(device_id, effective_vat, exc)
            return (
                OutcomeState.UNKNOWN,
                result,
                None,
                _restated(exc, f"{went_through}: following it failed: {exc}; {hint}"),
            )
        if status.succeeded:
            return OutcomeState.RENEWED, result, status, None
        checks = ", ".join(c.value for c in status.failed_checks)
        pcsid = "" if status.pcsid_generated is None else f", PCSID {status.pcsid_generated.value}"
        return (
            OutcomeState.FAILED,
            result,
            status,
            ActivityFailedError(
                f"device {device_id!r}: the renewal went through but PCSID generation activity "
                f"{activity_id} finished {status.state.value}{pcsid}"
                + (f"; failed checks: {checks}" if checks else ""),
                status=status,
            ),
        )

    def _trip(
        self, device_id: str, vat: str, exc: AuthenticationError | PermissionDeniedError
    ) -> None:
        """Open a circuit breaker: a 401 for the whole batch, a 403 for one VAT."""
        if isinstance(exc, AuthenticationError):
            if self._auth_refused is None:
                self._auth_refused = (device_id, exc)
        else:
            self._vat_refused.setdefault(vat, (device_id, exc))


async def _cancel_and_wait(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until every one has finished, even if we are cancelled.

    A cancellation of the caller meanwhile is re-raised once the tasks are gone, so no
    worker outlives the batch and no CancelledError is swallowed.
    """
    pending = {task for task in tasks if not task.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending:
        # Cancelled again while still running: a cancellation can be lost (aiohttp turns
        # one that lands together with its own timeout into a timeout), and a worker that
        # missed it must not keep the batch from closing.
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER)
        except asyncio.CancelledError as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


class PcsidClient(PollingClient):
    """An asyncio client for ClearTax's KSA PCSID onboarding APIs.

    Use it as an async context manager (or call :meth:`close`)::

        async with PcsidClient(token, vat) as client:
            result = await client.renew(device_id, otp)

    Calls: :meth:`renew`, :meth:`generate_csid`, :meth:`get_status`; waiting:
    :meth:`await_activity`, :meth:`watch`; many devices at once: :meth:`renew_many`.
    """

    async def __aenter__(self) -> PcsidClient:
        await super().__aenter__()
        return self

    def renew_many(
        self,
        requests: Iterable[RenewalRequest | tuple[str, str]]
        | AsyncIterable[RenewalRequest | tuple[str, str]],
        *,
        concurrency: int = 32,
        await_activities: bool = True,
        activity_timeout: float | None = 900.0,
        activity_interval: float = 2.0,
        activity_max_interval: float = 20.0,
        unreachable_after: int | None = UNREACHABLE_AFTER,
        journal: RenewalJournal | None = None,
        retry_unknown: bool = False,
    ) -> AsyncGenerator[RenewalOutcome, None]:
        """Renew many devices concurrently, yielding one outcome per request as each finishes.

        ``requests`` is read lazily, so a generator of any length is fine. Every request
        gets exactly one :class:`RenewalOutcome` (see :class:`OutcomeState`); a device's
        failure never stops the others and never raises here. Leaving the loop early (or
        ``aclose()``) cancels the work in flight; ``contextlib.aclosing`` makes that
        immediate rather than at garbage collection::

            async with aclosing(client.renew_many(rows)) as outcomes:
                async for outcome in outcomes:
                    print(outcome.device_id, outcome.state.name, outcome.error)

        The client's ``rate_limit`` and ``max_connections`` bound the batch, and a 429/503
        ``Retry-After`` pauses all of it. A 401 skips every later device; a 403 every later
        device of that VAT, and ``unreachable_after`` in a row that could not connect every
        later device (see ``_breaker``). A repeated ``device_id`` is sent once.

        Args:
            requests: :class:`RenewalRequest` objects or ``(device_id, otp)`` tuples, from an
                iterable or an async iterable.
            concurrency: the most devices in progress at once (capped at
                ``max_connections``).
            await_activities: when a renewal starts a PCSID generation activity, wait for its
                final status (the outcome is FAILED if the activity FAILED).
            activity_timeout: seconds to wait for each activity; ``None`` for no deadline.
            activity_interval: the first delay between polls of an activity.
            activity_max_interval: the cap that delay grows to.
            unreachable_after: that many devices in a row that could not connect stop the
                batch's sending (default 5); ``None`` never stops it.
            journal: a :class:`RenewalJournal`: a crash-safe, resumable batch (``_batch_journal``).
            retry_unknown: with a journal, send UNKNOWN devices again with the same OTP.

        Returns:
            An async generator of :class:`RenewalOutcome`, in completion order.

        Raises:
            InvalidArgumentError: a bad argument (raised here, before any iteration), or,
                from the iteration once the devices in flight are done, an item that is
                neither a RenewalRequest nor a 2-tuple. An exception raised by ``requests``
                itself is re-raised the same way.
            ClientClosedError: the client is closed.

        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        check_positive(activity_timeout, "activity_timeout", allow_none=True)
        check_positive(activity_interval, "activity_interval", allow_none=False)
        check_positive(activity_max_interval, "activity_max_interval", allow_none=False)
        if activity_max_interval < activity_interval:
            raise InvalidArgumentError("activity_max_interval must be >= activity_interval")
        check_threshold(unreachable_after)
        if isinstance(requests, (str, bytes)) or not isinstance(
            requests, (Iterable, AsyncIterable)
        ):
            raise InvalidArgumentError(
                "requests must be an iterable or async iterable of RenewalRequest or "
                f"(device_id, otp) tuples, got {type(requests).__name__}"
            )
        if self.closed:
            raise ClientClosedError("this PcsidClient is closed; create a new one")
        batch = _Batch(
            self,
            requests,
            await_activities=bool(await_activities),
            activity_timeout=activity_timeout,
            activity_interval=activity_interval,
            activity_max_interval=activity_max_interval,
            unreachable_after=unreachable_after,
            journal=journal,
            retry_unknown=bool(retry_unknown),
        )
        return self._renew_many(batch, min(concurrency, self.max_connections))

    async def _renew_many(
        self, batch: _Batch, workers: int
    ) -> AsyncGenerator[RenewalOutcome, None]:
        self._transport.check_loop()  # once for the batch, not as an outcome per device
        # Bounded: a slow consumer stalls the workers instead of piling up outcomes.
        queue: asyncio.Queue[RenewalOutcome | None] = asyncio.Queue(maxsize=workers)
        loop = asyncio.get_running_loop()
        journal = batch.journal
        opened = journal is not None and await _batch_journal.start_run(journal, self.vat)
        tasks = [
            loop.create_task(batch.work(queue), name=f"pcsid-renew-many-{i}")
            for i in range(workers)
        ]
        try:
            running = workers
            while running:
                outcome = await queue.get()
                if outcome is None:
                    running -= 1
                else:
                    yield outcome
            if batch.error is not None:
                raise batch.error
        finally:
            await _cancel_and_wait(tasks)
            if batch.commits is not None:
                await batch.commits.wait()
            if opened and journal is not None:
                journal.close()


PcsidClient.__module__ = "pcsid_async"
