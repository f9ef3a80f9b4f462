"""Retries of one logical call: the policy's decision, the wait schedule, the call's state.

:class:`Retries` tells whether a failure is retryable (for a safe GET or a single-use POST)
and wraps an attempt function in ``backoff`` with our own wait generator (equal jitter,
Retry-After as a floor, ``max_elapsed`` timed from the call's start). :class:`CallState`
is what the attempts of one call share.
"""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final, Generic, TypeVar

import aiohttp
import backoff

from ._config import RetryPolicy
from ._errors import (
    APIConnectionError,
    APIStatusError,
    InternalServerError,
    PcsidError,
    RateLimitError,
)

__all__ = ["CALL_STARTED", "CallState", "CallStats", "Retries"]

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

logger: Final = logging.getLogger("pcsid_async")

# Statuses a safe call retries. 501, 505 and friends are not transient.
_RETRYABLE_5XX: Final = frozenset({500, 502, 503, 504})
# Connection failures that no retry can cure.
_PERMANENT_CONNECT_ERRORS: Final = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ClientConnectorSSLError,
)

# When the call whose retries backoff is running began (set around backoff by Transport).
CALL_STARTED: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "pcsid_async_call_started", default=None
)


class CallStats:
    """Filled in by :meth:`Transport.call` for callers that report attempts (the batch)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


class Retries:
    """The retry policy of one client, applied: what is retried, and after how long."""

    __slots__ = ("policy",)

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def _wait_gen(self) -> Generator[float, BaseException | None, None]:
        # backoff primes this generator as it starts, which is after the call's first attempt
        # (see call): the call's own start time, when set, keeps max_elapsed exact.
        started = CALL_STARTED.get()
        if started is None:
            started = time.monotonic()
        exc = yield 0.0  # primed by backoff with send(None); the value is discarded
        retry = 0
        while True:
            retry += 1
            delay = self.policy.backoff_delay(retry)
            # Equal jitter: never zero, and thousands of clients do not retry in step.
            delay = random.uniform(delay / 2, delay)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() - started + delay > self.policy.max_elapsed:
                # No retry may start after max_elapsed, and none before Retry-After (backoff
                # would cut the wait short instead): stopping makes backoff re-raise exc.
                return
            exc = yield delay

    def wrap(self, attempt: _F, *, safe: bool) -> _F:
        """``attempt`` retried by ``backoff`` per the policy, for a safe call or not."""
        retrier = backoff.on_exception(
            self._wait_gen,
            PcsidError,
            max_tries=self.policy.max_attempts,
            max_time=self.policy.max_elapsed,
            jitter=None,  # _wait_gen jitters itself, so Retry-After is never jittered down
            giveup=lambda exc: not self.is_retryable(exc, safe=safe),
            on_backoff=self._on_backoff,
            logger=None,
        )
        wrapped: _F = retrier(attempt)
        return wrapped

    def is_retryable(self, exc: BaseException, *, safe: bool) -> bool:
        """Whether the policy retries ``exc`` for a safe (GET) or single-use (POST) call."""
        policy = self.policy
        if (
            isinstance(exc, APIStatusError)
            and exc.retry_after is not None
            and exc.retry_after > policy.max_retry_after
        ):
            return False
        if isinstance(exc, RateLimitError):
            return True  # the server refused without processing
        if isinstance(exc, APIConnectionError):
            if isinstance(exc.__cause__, _PERMANENT_CONNECT_ERRORS):
                return False  # an untrusted certificate does not fix itself in a second
            return not exc.may_have_reached_server or safe or policy.retry_unsafe
        if isinstance(exc, InternalServerError) and exc.status_code in _RETRYABLE_5XX:
            return safe or policy.retry_unsafe
        return False

    def _on_backoff(self, details: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            exc = details.get("exception")
            logger.debug(
                "retrying after %s (attempt %d failed, waiting %.3f s)",
                type(exc).__name__,
                details["tries"],
                details["wait"],
            )


class CallState(Generic[_T]):
    """Per-call state threaded through the retries of one logical call."""

    __slots__ = (
        "attempt",
        "body",
        "decode",
        "handover",
        "headers",
        "method",
        "path",
        "replay",
        "safe",
        "sent_at",
        "started",
        "stats",
        "timeout",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        decode: Callable[[int, Mapping[str, str], bytes], _T],
        safe: bool,
        timeout: aiohttp.ClientTimeout | None,
        stats: CallStats | None,
        started: float | None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.decode = decode
        self.safe = safe
        self.timeout = timeout
        self.stats = stats
        # time.monotonic() at the call's start when a retryable failure of its first attempt
        # goes to backoff (see Transport.call); None: one attempt only, or backoff's own.
        self.handover = started is not None
        self.started = started or 0.0
        self.attempt = 0
        self.replay: PcsidError | None = None
        self.sent_at: float | None = None  # perf_counter() at this attempt's send (hooks only)
