"""The batch's side of a :class:`~pcsid_async.RenewalJournal`: start, consult, mark, record.

``renew_many(..., journal=...)`` calls these; the batch itself stays unaware of SQLite.

* Resume rules: see ``pcsid_async._journal_rules``. A repeated device id is not recorded
  (its SKIPPED outcome would replace the first occurrence's row).
* :func:`start_run` opens the journal unless the caller did (one it opened is closed at the
  batch's end) and ``begin``s the run before any worker exists, so a :class:`JournalError`
  (a bad file, another run holding it, another VAT) surfaces from the iteration's start
  with nothing sent.
* Per device, :func:`recorded_outcome` turns a "do not send" decision into the outcome the
  caller gets instead of a request: the recorded state, ``result``/``activity`` ``None``,
  ``attempts`` 0 (this run sent nothing) and an error saying why it was not sent again:
  :class:`InterruptedRenewalError` for a device an earlier run left in flight, else a
  :class:`PcsidError` whose message carries the recorded error type and message. A RENEWED
  record yields a RENEWED outcome with no error.
* ``mark_sending`` and ``record_soon`` go through a :class:`GroupCommitter`: a writer thread
  commits every write waiting at that moment in one durable transaction, so the event loop
  never waits on the disk and many devices share one fsync. A worker waits for its device's
  ``sending`` mark before the POST; it does not wait for the outcome's record (its next
  device's mark shares that commit), but the batch hands an outcome out only once its record
  is durable. A cancellation while marking leaves the commit to finish: the journal then
  says ``sending`` and the next run reports the device interrupted (UNKNOWN), never
  re-sends it. A record that fails to commit is logged, the outcome still handed out, and
  the row keeps its ``sending`` mark (so again: UNKNOWN, never re-sent).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from . import _journal_rules as _rules
from ._decode import scrub
from ._errors import InterruptedRenewalError, InvalidArgumentError, PcsidError
from ._journal import Action, Decision, RenewalJournal

if TYPE_CHECKING:
    from typing import TypeAlias

    from ._batch import OutcomeState, RenewalOutcome, RenewalRequest
    from ._client import PcsidClient
    from ._journal_store import Row

    _Write: TypeAlias = "tuple[RenewalRequest, str] | RenewalOutcome"

__all__ = ["GroupCommitter", "check_journal", "recorded_outcome", "start_run"]

logger: Final = logging.getLogger("pcsid_async")


def check_journal(journal: object) -> None:
    """Refuse anything but a :class:`RenewalJournal` or ``None`` (``InvalidArgumentError``)."""
    if journal is not None and not isinstance(journal, RenewalJournal):
        raise InvalidArgumentError(
            f"journal must be a RenewalJournal or None, got {type(journal).__name__}"
        )


async def start_run(journal: RenewalJournal, vat: str) -> bool:
    """Open (if needed) and ``begin`` the run; whether this call opened the journal.

    Raises:
        JournalError: the journal cannot be used; nothing was sent.

    """
    opened = journal._db is None
    await asyncio.to_thread(journal.open)
    try:
        await asyncio.to_thread(journal.begin, vat=vat)
    except BaseException:
        if opened:
            journal.close()
        raise
    return opened


def recorded_outcome(
    request: RenewalRequest, decision: Decision, state_type: type[OutcomeState]
) -> RenewalOutcome:
    """The outcome standing for a device the journal says not to send (see module doc)."""
    from ._batch import RenewalOutcome  # noqa: PLC0415 - _batch imports this module

    record = dict(decision.record or {})
    state = state_type(record.get("state", "UNKNOWN"))
    error: PcsidError | None = None
    error_type = record.get("error_type")
    message = str(record.get("error_message") or "")
    if decision.action is Action.IN_FLIGHT:
        state = state_type.SKIPPED
        error = InvalidArgumentError(
            f"device {request.device_id!r} was already sent in this run; not sent again"
        )
    elif error_type == InterruptedRenewalError.__name__:
        error = InterruptedRenewalError(f"{message}; not sent again: {decision.reason}")
    elif state is not state_type.RENEWED:
        error = PcsidError(
            f"device {request.device_id!r} not sent again ({decision.reason}); recorded "
            f"{record.get('finished_at')}: {error_type}: {message}"
        )
    return RenewalOutcome(
        request=request,
        state=state,
        result=None,
        activity=None,
        error=error,
        attempts=0,
        elapsed=0.0,
    )


class GroupCommitter:
    """Commits the batch's journal writes in groups: one durable commit for all waiting.

    Each ``mark_sending``/``record`` of a device waits until a commit that holds it has
    returned (so ``sending`` is on disk before the POST leaves), but the devices that queue
    up while a commit runs share the next one: one fsync for many devices instead of two per
    device. A single writer thread runs the commits; the loop's own reads (``decide``) only
    share the journal's connection lock. A waiter cancelled meanwhile does not withdraw its
    write: a ``sending`` mark still lands (the next run calls that device interrupted).
    """

    def __init__(self, journal: RenewalJournal, client: PcsidClient) -> None:
        self.journal = journal
        self._token = client._token
        self._queue: list[tuple[_Write, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        # Each device in flight: its sending row's OTP fingerprint, reused for its outcome.
        self._fingerprints: dict[str, str | None] = {}

    async def mark_sending(self, request: RenewalRequest, vat: str) -> None:
        """Commit ``sending`` for ``request``; durable on return."""
        await self._submit((request, vat))

    async def record(self, outcome: RenewalOutcome) -> None:
        """Commit ``outcome`` as its device's final state; durable on return."""
        failure = await self.record_soon(outcome)
        if failure is not None:
            raise failure

    def record_soon(self, outcome: RenewalOutcome) -> asyncio.Future[BaseException | None]:
        """Queue ``outcome``'s commit: the future's result is ``None`` once it is durable.

        The worker need not wait: its next device's ``sending`` mark joins the same group, so
        a device costs one commit wait instead of two, and the batch waits for the future
        before it hands the outcome over. A failed commit is the future's *result* (the
        exception), not its exception, so an outcome nobody waits for any more (the caller
        stopped iterating) leaves no "exception never retrieved" behind.
        """
        return self._enqueue(outcome)

    def report(self, outcome: RenewalOutcome, failure: BaseException | None) -> None:
        """Warn that ``outcome``'s record failed (``failure``); nothing when it is durable.

        The outcome is still handed out (the device was dealt with); its row keeps the
        ``sending`` mark, so the next run reports it interrupted and never sends it again.
        """
        if failure is not None:
            text = scrub(str(failure), (self._token, str(outcome.request.otp)))
            logger.warning(
                "the journal could not record device %r (%s: %s); it stays marked sending, "
                "so a resumed run reports it UNKNOWN and does not send it again",
                outcome.device_id,
                type(failure).__name__,
                text,
            )

    async def _submit(self, write: _Write) -> None:
        await self._enqueue(write)

    def _enqueue(self, write: _Write) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((write, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="pcsid-journal-commits")
        return future

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self._commit, [write for write, _ in group])
            except BaseException as exc:
                for write, future in group:
                    if future.done():
                        continue
                    if isinstance(write, tuple):  # a sending mark: its POST must not leave
                        future.set_exception(exc)
                    else:
                        future.set_result(exc)
                if isinstance(exc, Exception):
                    continue
                raise
            for _, future in group:
                if not future.done():
                    future.set_result(None)

    def _commit(self, writes: list[_Write]) -> None:
        """One transaction for ``writes`` (run in a thread; the only writer of the batch).

        The fingerprints and records are computed here, off the event loop, with one
        timestamp for the group; the ``sending`` marks go first, then the outcomes (a device
        has at most one write in a group: its outcome waits for its ``sending`` commit).
        """
        journal = self.journal
        now = _rules.now()
        sending: list[Row] = []
        outcomes: list[Row] = []
        secrets = (self._token,)
        fingerprints = self._fingerprints
        for write in writes:
            if isinstance(write, tuple):
                request, vat = write
                row = journal.sending_row(request.device_id, request.otp, vat, now)
                fingerprints[row[0]] = row[3]
                sending.append(row)
            else:
                fp = fingerprints.pop(str(write.device_id), None)
                outcomes.append(journal.outcome_row(write, secrets, now, otp_fp=fp)[0])
        journal.write(sending, outcomes)

    async def wait(self) -> None:
        """Wait until every queued write is committed (or has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
