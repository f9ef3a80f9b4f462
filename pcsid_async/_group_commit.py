"""Group commits of a batch's journal writes: :class:`GroupCommitter`.

A device's ``sending`` mark must be on disk before its POST leaves, and a durable commit
costs an fsync (about a millisecond on a local disk, more on a network volume). So writes
are committed in groups, by one writer thread that runs commits back to back: while one
commit runs, every write queued meanwhile waits for the next, which takes them all at once.

The writer takes its next group itself, straight from a thread-safe queue, the moment a
commit returns: it never waits for the event loop to hand it work (a busy loop would hold
every commit back by however long its current turn takes). The loop only learns of each
finished commit, with one thread-safe callback per group that settles the group's futures.
The thread starts with the first write, stops when ``wait`` has seen everything committed
(or after a few idle seconds, should a batch be abandoned without its clean-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Final, cast

from . import _journal_rules as _rules
from ._decode import scrub
from ._journal import RenewalJournal

if TYPE_CHECKING:
    from typing import TypeAlias

    from ._batch import RenewalOutcome, RenewalRequest
    from ._client import PcsidClient
    from ._journal_store import Row

    _Write: TypeAlias = "tuple[RenewalRequest, str] | RenewalOutcome"
    # A write (or wait()'s marker), the future its waiter awaits, and that waiter's loop.
    _Item: TypeAlias = "tuple[object, asyncio.Future[Any], asyncio.AbstractEventLoop]"

__all__ = ["GroupCommitter"]

logger: Final = logging.getLogger("pcsid_async")

# wait()'s marker: settled once every write queued before it has been committed.
_FLUSH: Final = object()
# A writer with nothing to do for this long stops (a batch abandoned without wait()).
_IDLE_EXIT: Final = 5.0


class GroupCommitter:
    """Commits the batch's journal writes in groups: one durable commit for all waiting.

    ``mark_sending`` returns once a commit holding the mark has returned (so ``sending`` is
    on disk before the POST leaves); ``record_soon`` queues an outcome without waiting, so
    a worker's next ``sending`` mark shares that commit. The loop's own reads (``decide``)
    only share the journal's connection lock. A waiter cancelled meanwhile does not withdraw
    its write: a ``sending`` mark still lands (the next run calls that device interrupted).
    """

    def __init__(self, journal: RenewalJournal, client: PcsidClient) -> None:
        self.journal = journal
        self._token = client._token
        self._pending: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards starting and stopping the writer
        self._writer: threading.Thread | None = None
        # Each device in flight: its sending row's OTP fingerprint, reused for its outcome
        # (only the writer thread touches it).
        self._fingerprints: dict[str, str | None] = {}

    async def mark_sending(self, request: RenewalRequest, vat: str) -> None:
        """Commit ``sending`` for ``request``; durable on return."""
        await self._enqueue((request, vat))

    def record_soon(self, outcome: RenewalOutcome) -> asyncio.Future[BaseException | None]:
        """Queue ``outcome``'s commit: the future's result is ``None`` once it is durable.

        A failed commit is the future's *result* (the exception), not its exception, so an
        outcome nobody waits for any more (the caller stopped iterating) leaves no
        "exception never retrieved" behind.
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

    async def wait(self) -> None:
        """Wait until every write queued so far is committed (or has failed)."""
        await self._enqueue(_FLUSH)

    # --- the loop's side -----------------------------------------------------------------------

    def _enqueue(self, write: object) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending.put((write, future, loop))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="pcsid-journal-writer", daemon=True
                )
                self._writer.start()
        return future

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        pending = self._pending
        while True:
            try:
                group = [pending.get(timeout=_IDLE_EXIT)]
            except queue.Empty:
                group = []
            while True:  # everything queued by now joins this commit
                try:
                    group.append(pending.get_nowait())
                except queue.Empty:
                    break
            if group:
                self._commit_group(group)
            if not group or group[-1][0] is _FLUSH:
                with self._lock:  # stop, unless a write arrived since
                    if pending.empty():  # pragma: no branch - a write racing the stop
                        self._writer = None
                        return

    def _commit_group(self, group: list[_Item]) -> None:
        writes = [cast("_Write", write) for write, _, _ in group if write is not _FLUSH]
        failure: BaseException | None = None
        if writes:
            try:
                self._commit(writes)
            except BaseException as exc:  # handed to the waiters, whatever it is
                failure = exc
        loops = {id(loop): loop for _, _, loop in group}
        for loop in loops.values():
            mine = [item for item in group if item[2] is loop]
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, mine, failure)

    def _commit(self, writes: list[_Write]) -> None:
        """One transaction for ``writes`` (the only writer of the batch).

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


def _settle(group: list[_Item], failure: BaseException | None) -> None:
    """On the loop: each waiter of one commit learns how it went."""
    for write, future, _ in group:
        if future.done():  # its waiter was cancelled; the write landed all the same
            continue
        if failure is not None and isinstance(write, tuple):
            future.set_exception(failure)  # a sending mark: its POST must not leave
        elif write is _FLUSH or isinstance(write, tuple):
            future.set_result(None)
        else:
            future.set_result(failure)  # an outcome's record: None when durable
