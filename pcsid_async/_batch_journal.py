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
* ``mark_sending`` and ``record_soon`` go through a :class:`GroupCommitter`
  (``_group_commit``): a writer thread commits every write waiting at that moment in one
  durable transaction, so the event loop never waits on the disk and many devices share
  one fsync. A worker waits for its device's ``sending`` mark before the POST; it does not
  wait for the outcome's record (its next device's mark shares that commit), but the batch
  hands an outcome out only once its record is durable. A cancellation while marking
  leaves the commit to finish: the journal then says ``sending`` and the next run reports
  the device interrupted (UNKNOWN), never re-sends it. A record that fails to commit is
  logged, the outcome still handed out, and the row keeps its ``sending`` mark (so again:
  UNKNOWN, never re-sent).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._errors import InterruptedRenewalError, InvalidArgumentError, PcsidError
from ._group_commit import GroupCommitter
from ._journal import Action, Decision, RenewalJournal

if TYPE_CHECKING:
    from ._batch import OutcomeState, RenewalOutcome, RenewalRequest

__all__ = ["GroupCommitter", "check_journal", "recorded_outcome", "start_run"]


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
