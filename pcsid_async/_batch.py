"""Batch renewal of many devices: ``renew_many``, bound as a ``PcsidClient`` method.

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

Each device's outcome and the rules that decide it: ``_outcomes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from . import _batch_journal
from ._breaker import UNREACHABLE_AFTER, check_threshold
from ._errors import ClientClosedError, InvalidArgumentError
from ._journal import RenewalJournal
from ._outcomes import OutcomeState, RenewalOutcome, RenewalRequest, as_request
from ._renewal import Renewer
from ._validate import check_positive

if TYPE_CHECKING:
    from ._client import PcsidClient
    from ._renewal import Handed

__all__ = ["OutcomeState", "RenewalOutcome", "RenewalRequest", "renew_many"]

_END: Final = object()
# A worker still running this long after its cancellation is cancelled again.
_RECANCEL_AFTER: Final = 1.0


class _Batch:
    """One ``renew_many`` run: its source, the device ids seen, and its :class:`Renewer`."""

    def __init__(
        self,
        requests: Iterable[RenewalRequest | tuple[str, str]]
        | AsyncIterable[RenewalRequest | tuple[str, str]],
        renewer: Renewer,
    ) -> None:
        self.renewer = renewer
        self.journal = renewer.journal
        self.commits = renewer.commits
        self._requests = requests
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        self._started = False
        self._lock = asyncio.Lock()
        self._exhausted = False
        self.error: BaseException | None = None  # the source failed: raised after the rest
        self._seen: set[str] = set()

    # --- the source --------------------------------------------------------------------------

    def _start(self) -> None:
        """Open the source on the first pull (``iter``/``aiter`` may raise: a failed source)."""
        self._started = True
        try:
            if isinstance(self._requests, AsyncIterable):
                self._async = aiter(self._requests)
            else:
                self._sync = iter(self._requests)
        except Exception as exc:  # the caller's iterable failed: stop pulling, report it
            self._failed(exc)

    async def next_request(self) -> tuple[RenewalRequest, bool] | None:
        """The next request and whether it repeats an earlier device id; ``None`` at the end.

        An async iterator is pulled under a lock (it must not be entered twice at once) and
        its duplicate check happens under it too, so "first occurrence" means source order.
        A plain iterable needs no lock: pulling from it never yields to the loop.
        """
        if not self._started:
            self._start()
        if self._sync is not None:
            if self._exhausted:
                return None
            try:
                item = next(self._sync, _END)
            except Exception as exc:  # the caller's iterable failed: stop pulling, report it
                self._failed(exc)
                return None
            return self._admit(item)
        if self._async is None:  # the source could not be opened
            return None
        async with self._lock:
            if self._exhausted:
                return None
            try:
                item = await anext(self._async, _END)
            except Exception as exc:  # the caller's iterable failed: stop pulling, report it
                self._failed(exc)
                return None
            return self._admit(item)

    def _failed(self, exc: Exception) -> None:
        self._exhausted = True
        self.error = exc

    def _admit(self, item: object) -> tuple[RenewalRequest, bool] | None:
        """``item`` as a request and whether it repeats a device id (``None``: the end)."""
        if item is _END:
            self._exhausted = True
            return None
        try:
            request = as_request(item)
        except Exception as exc:  # not a request: stop pulling, report it
            self._failed(exc)
            return None
        device_id: object = request.device_id  # typed str, but callers send anything
        if not isinstance(device_id, str):
            return request, False  # refused by validation, never deduplicated
        seen = self._seen
        duplicate = device_id in seen
        seen.add(device_id)
        return request, duplicate

    async def work(self, queue: asyncio.Queue[Handed | None]) -> None:
        """One worker: pull, renew, hand over the outcome; until the source ends."""
        renewer = self.renewer
        try:
            while (pulled := await self.next_request()) is not None:
                handed = await renewer.outcome(*pulled)
                if queue.full():  # a slow consumer: wait for room
                    await queue.put(handed)
                else:
                    queue.put_nowait(handed)
        except Exception as exc:  # pragma: no cover - next_request and outcome catch all
            self.error = self.error or exc
        await queue.put(None)


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


def _check_batch_args(
    requests: object,
    concurrency: object,
    activity_timeout: float | None,
    activity_interval: float,
    activity_max_interval: float,
    unreachable_after: object,
) -> None:
    """Refuse a bad ``renew_many`` argument (``InvalidArgumentError``) before any iteration."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    check_positive(activity_timeout, "activity_timeout", allow_none=True)
    check_positive(activity_interval, "activity_interval", allow_none=False)
    check_positive(activity_max_interval, "activity_max_interval", allow_none=False)
    if activity_max_interval < activity_interval:
        raise InvalidArgumentError("activity_max_interval must be >= activity_interval")
    check_threshold(unreachable_after)
    if isinstance(requests, (str, bytes)) or not isinstance(requests, (Iterable, AsyncIterable)):
        raise InvalidArgumentError(
            "requests must be an iterable or async iterable of RenewalRequest or "
            f"(device_id, otp) tuples, got {type(requests).__name__}"
        )


def renew_many(  # noqa: D417 (self: the client; bound in _client)
    self: PcsidClient,
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
    _check_batch_args(
        requests,
        concurrency,
        activity_timeout,
        activity_interval,
        activity_max_interval,
        unreachable_after,
    )
    if self.closed:
        raise ClientClosedError("this PcsidClient is closed; create a new one")
    renewer = Renewer(
        self,
        await_activities=bool(await_activities),
        activity_timeout=activity_timeout,
        activity_interval=activity_interval,
        activity_max_interval=activity_max_interval,
        unreachable_after=unreachable_after,
        journal=journal,
        retry_unknown=bool(retry_unknown),
    )
    return _renew_many(self, _Batch(requests, renewer), min(concurrency, self.max_connections))


async def _renew_many(
    self: PcsidClient, batch: _Batch, workers: int
) -> AsyncGenerator[RenewalOutcome, None]:
    self._transport.check_loop()  # once for the batch, not as an outcome per device
    # Bounded: a slow consumer stalls the workers instead of piling up outcomes.
    queue: asyncio.Queue[Handed | None] = asyncio.Queue(maxsize=workers)
    loop = asyncio.get_running_loop()
    journal = batch.journal
    opened = journal is not None and await _batch_journal.start_run(journal, self.vat)
    tasks = [
        loop.create_task(batch.work(queue), name=f"pcsid-renew-many-{i}") for i in range(workers)
    ]
    try:
        running = workers
        while running:
            handed = await queue.get()
            if handed is None:
                running -= 1
                continue
            outcome, recorded = handed
            if recorded is not None and batch.commits is not None:  # durable before handed out
                batch.commits.report(outcome, await recorded)
            yield outcome
        if batch.error is not None:
            raise batch.error
    finally:
        await _cancel_and_wait(tasks)
        if batch.commits is not None:
            await batch.commits.wait()
        if opened and journal is not None:
            journal.close()
