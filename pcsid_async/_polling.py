"""Following an activity IN_PROGRESS -> SUCCEEDED/FAILED: ``watch`` and ``await_activity``.

The schedule: the first poll at once; then ``interval``, growing x1.5 per poll up to
``max_interval``, each delay with equal jitter (d becomes uniform(d/2, d)) so thousands of
pollers do not fire in step. A ``Retry-After`` on any answer means "not before". One
deadline (monotonic) bounds the whole wait: a sleep that would cross it is cut to end at
it, one last poll is made there, and then :class:`ActivityTimeoutError` carries the last
status seen.

Each poll is a single request: a transient failure (what the retry policy retries for a
GET) is ridden out by this schedule, with the policy's backoff, inside the deadline; so
request-level retries and the poll schedule never multiply.

``watch`` and ``await_activity`` take the client as ``self``: ``_client`` binds them as
``PcsidClient`` methods; they use its transport, headers, timeout and retry policy.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final

from ._decode import activity_decoder, parse_retry_after
from ._errors import ActivityFailedError, ActivityTimeoutError, InvalidArgumentError, PcsidError
from ._models import ActivityStatus
from ._validate import check_activity_id, check_positive

if TYPE_CHECKING:
    from ._client import PcsidClient

__all__ = ["await_activity", "schedule", "watch"]

logger: Final = logging.getLogger("pcsid_async")

GROWTH: Final = 1.5
# A poll at the deadline still gets this long to answer: a 0-second budget is no poll at all.
_LAST_POLL_FLOOR: Final = 0.05

OnUpdate = Callable[[ActivityStatus], "Awaitable[object] | object"]


def schedule(interval: float, max_interval: float, poll: int) -> float:
    """The un-jittered delay after poll number ``poll`` (0 for the first poll)."""
    return min(max_interval, interval * GROWTH**poll)


def _change_key(status: ActivityStatus) -> tuple[object, ...]:
    return (
        status.state,
        status.total_count,
        status.success_count,
        status.failure_count,
        status.pcsid_generated,
    )


def _check_wait_args(timeout: float | None, interval: float, max_interval: float) -> None:
    check_positive(interval, "interval", allow_none=False)
    check_positive(max_interval, "max_interval", allow_none=False)
    if max_interval < interval:
        raise InvalidArgumentError("max_interval must be >= interval")
    check_positive(timeout, "timeout (None for no deadline)", allow_none=True)


async def _poll_once(
    self: PcsidClient, activity_id: str, *, vat: str | None, timeout: float | None
) -> tuple[ActivityStatus, float | None]:
    """One attempt of ``get_status`` for the poller: the status and any Retry-After.

    No request-level retries: the poller's schedule rides out transient failures, so
    the two never multiply.
    """
    segment = check_activity_id(activity_id)
    path = f"/onboarding/{segment}/pcsid-status"
    decode_status = activity_decoder(activity_id, path, self._secrets)

    def decode(
        status: int, headers: Mapping[str, str], body: bytes
    ) -> tuple[ActivityStatus, float | None]:
        model = decode_status(status, headers, body)
        return model, parse_retry_after(headers.get("Retry-After"))

    return await self._transport.call(
        "GET",
        path,
        headers=self._headers(vat, post=False),
        body=None,
        decode=decode,
        safe=True,
        retries=False,
        timeout=timeout,
    )


def watch(  # noqa: D417 (self: the client; bound in _client)
    self: PcsidClient,
    activity_id: str,
    *,
    vat: str | None = None,
    timeout: float | None = 900.0,
    interval: float = 2.0,
    max_interval: float = 20.0,
    request_timeout: float | None = None,
) -> AsyncIterator[ActivityStatus]:
    """Yield each distinct status of an activity, up to and including the terminal one.

    A status is yielded when it is the first seen, or when its state, counts or
    ``pcsid_generated`` changed: not on every poll.

    Args:
        activity_id: the activity to follow.
        vat: the VAT number for these calls, if not the client's default.
        timeout: one deadline in seconds for the whole wait; ``None`` for no deadline.
        interval: the first delay between polls, in seconds.
        max_interval: the cap the delay grows to (x1.5 per poll).
        request_timeout: seconds per poll request (never past the deadline);
            ``None``: the client's timeout.

    Raises:
        ActivityTimeoutError: the deadline passed; ``.last_status`` has the last status.
        PcsidError: a permanent failure of a poll (400, 401, 403, 404, undecodable).

    """
    check_activity_id(activity_id)
    if vat is not None:
        self._headers(vat, post=False)  # validates it now, not at the first poll
    _check_wait_args(timeout, interval, max_interval)
    check_positive(request_timeout, "request_timeout", allow_none=True)
    return _watch(self, activity_id, vat, timeout, interval, max_interval, request_timeout)


async def _watch(
    self: PcsidClient,
    activity_id: str,
    vat: str | None,
    timeout: float | None,
    interval: float,
    max_interval: float,
    request_timeout: float | None = None,
) -> AsyncIterator[ActivityStatus]:
    # time.monotonic(), not loop.time(): uvloop's clock is cached whole milliseconds and its
    # timers fire up to 1 ms early, and the wait must never give up before its deadline.
    deadline = None if timeout is None else time.monotonic() + timeout
    if request_timeout is None:
        request_timeout = self._timeout
    last: ActivityStatus | None = None
    last_key: tuple[object, ...] | None = None
    last_error: PcsidError | None = None
    polls = 0
    failures = 0
    while True:
        poll_timeout = request_timeout
        if deadline is not None:
            remaining = max(deadline - time.monotonic(), _LAST_POLL_FLOOR)
            poll_timeout = remaining if poll_timeout is None else min(poll_timeout, remaining)
        hint: float | None
        try:
            status, hint = await _poll_once(self, activity_id, vat=vat, timeout=poll_timeout)
        except PcsidError as exc:
            if not self._transport.is_retryable(exc, safe=True):
                raise
            last_error = exc
            failures += 1
            hint = getattr(exc, "retry_after", None)
            base = min(self._retry.backoff_delay(failures), schedule(interval, max_interval, polls))
        else:
            last_error = None
            failures = 0
            key = _change_key(status)
            if key != last_key:
                last, last_key = status, key
                yield status
            else:
                last = status
            if status.is_terminal:
                return
            base = schedule(interval, max_interval, polls)
            polls += 1

        delay = random.uniform(base / 2, base)
        if hint is not None:
            delay = max(delay, hint)
        now = time.monotonic()
        if deadline is not None:
            if now >= deadline or (hint is not None and now + hint > deadline):
                # Out of time, or the server asked us not to poll again before it.
                while now < deadline:  # a timer that fires early sleeps again
                    await asyncio.sleep(deadline - now)
                    now = time.monotonic()
                raise _timeout_error(activity_id, timeout, last, last_error)
            delay = min(delay, deadline - now)
        logger.debug(
            "activity %s: %s; next poll in %.3f s",
            activity_id,
            last.state.value if last_error is None and last is not None else "poll failed",
            delay,
        )
        await asyncio.sleep(delay)


def _timeout_error(
    activity_id: str,
    timeout: float | None,
    last: ActivityStatus | None,
    last_error: PcsidError | None,
) -> ActivityTimeoutError:
    seen = f"last state {last.state.value}" if last is not None else "no status was read"
    error = ActivityTimeoutError(
        f"activity {activity_id} did not finish within {timeout} s ({seen}); it may still "
        "finish: call await_activity again with the same id to resume",
        activity_id=activity_id,
        last_status=last,
    )
    error.__cause__ = last_error
    return error


async def await_activity(  # noqa: D417 (self: the client; bound in _client)
    self: PcsidClient,
    activity_id: str,
    *,
    vat: str | None = None,
    timeout: float | None = 900.0,
    interval: float = 2.0,
    max_interval: float = 20.0,
    on_update: OnUpdate | None = None,
    raise_on_failure: bool = False,
    request_timeout: float | None = None,
) -> ActivityStatus:
    """Poll an activity until it finishes and return its final status.

    FAILED is an answer, returned like SUCCEEDED (check ``status.succeeded`` and
    ``status.checks``), unless ``raise_on_failure`` is set.

    Args:
        activity_id: the activity to follow (``CsidGenerationResult.activity_id``).
        vat: the VAT number for these calls, if not the client's default.
        timeout: one deadline in seconds for the whole wait (default 15 minutes);
            ``None`` for no deadline.
        interval: the first delay between polls (default 2 s).
        max_interval: the cap the delay grows to, x1.5 per poll (default 20 s).
        on_update: a plain or async callable, called with each distinct status.
        raise_on_failure: raise :class:`ActivityFailedError` for a FAILED activity.
        request_timeout: seconds per poll request, distinct from ``timeout`` (the
            whole wait's deadline); ``None``: the client's timeout.

    Returns:
        The terminal :class:`ActivityStatus`.

    Raises:
        ActivityTimeoutError: the deadline passed; the activity may still finish, so
            call again with the same id to resume.
        ActivityFailedError: the activity FAILED and ``raise_on_failure`` was set.
        PcsidError: a permanent failure of a poll (400, 401, 403, 404, undecodable).

    """
    final: ActivityStatus | None = None
    async for status in self.watch(
        activity_id,
        vat=vat,
        timeout=timeout,
        interval=interval,
        max_interval=max_interval,
        request_timeout=request_timeout,
    ):
        final = status
        if on_update is not None:
            outcome = on_update(status)
            if inspect.isawaitable(outcome):
                await outcome
    # watch() only stops after yielding a terminal status.
    assert final is not None
    if raise_on_failure and not final.succeeded:
        raise ActivityFailedError(
            f"activity {activity_id} finished {final.state.value}"
            + (
                f"; failed checks: {', '.join(c.value for c in final.failed_checks)}"
                if final.failed_checks
                else ""
            ),
            status=final,
        )
    return final
