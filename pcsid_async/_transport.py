"""The one place that touches aiohttp: session ownership, pacing, timeouts, retries.

Every request goes through :meth:`Transport.call`:

1. a concurrency gate (at or below the connector's limit, so no request burns its timeout
   queueing for a pooled connection: aiohttp counts pool-queue time against the timeout);
2. the pacer: a client-wide pause while a server-sent ``Retry-After`` runs, then the optional
   ``rate_limit`` spacing;
3. the request, with redirects off and the timeout applied per attempt;
4. translation of aiohttp's errors into ours, deciding ``may_have_reached_server`` from
   whether aiohttp actually began writing the request (our connector tells us);
5. the caller's decoder, then the retry decision, driven by ``backoff``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import Any, Final, TypeVar

import aiohttp
import backoff
from yarl import URL

from ._config import RetryPolicy
from ._decode import parse_retry_after
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    InternalServerError,
    PcsidError,
    RateLimitError,
)
from ._pacing import _HAS_UNCANCEL, _NO_AIOHTTP_TIMER, _Deadline, _Deadlines, _Gate, _Pacer
from ._sending import (
    _CALL_STARTED,
    _SENDING,
    CallStats,
    _CallState,
    _Connector,
    _describe,
    _SendTrace,
    check_base_url,
)

__all__ = ["CallStats", "Decoder", "Transport", "check_base_url"]

_T = TypeVar("_T")
Decoder = Callable[[int, Mapping[str, str], bytes], _T]

logger: Final = logging.getLogger("pcsid_async")

# Statuses a safe call retries. 501, 505 and friends are not transient.
_RETRYABLE_5XX: Final = frozenset({500, 502, 503, 504})
# Connection failures that no retry can cure.
_PERMANENT_CONNECT_ERRORS: Final = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ClientConnectorSSLError,
)
# Statuses whose Retry-After pauses every request of the client.
_PAUSING: Final = frozenset({429, 503})


class Transport:
    """Sends requests for one client; owns (or borrows) an ``aiohttp.ClientSession``."""

    def __init__(
        self,
        *,
        base_url: URL,
        timeout: float | None,
        retry: RetryPolicy,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        rate_limit: float | None,
        trace_configs: Iterable[aiohttp.TraceConfig] | None,
        ssl: ssl_module.SSLContext | bool,
    ) -> None:
        self._base = str(base_url).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._policy = retry
        self._session = session
        self._owns_session = session is None
        # A borrowed session has its own connector, not our _Connector, so for it "reached
        # the server" falls back to the exception type (see _connection_error).
        self._traced = session is None
        self._max_connections = max_connections
        self._trace_configs = list(trace_configs or ())
        self._ssl = ssl
        self._gate = _Gate(max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: _Deadlines | None = None
        self._pacer = _Pacer(rate_limit)
        self._closed = False
        # Configured here, per client, not by import-time decorators. Two retriers, because
        # backoff's giveup sees only the exception and safety is a property of the call.
        self._retry_safe = self._retrier(safe=True)(self._attempt)
        self._retry_unsafe = self._retrier(safe=False)(self._attempt)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def pacer(self) -> _Pacer:
        """The client-wide pacer (the batch engine reads its pause)."""
        return self._pacer

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this PcsidClient is closed; create a new one")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._deadlines = _Deadlines(self._loop)
        if self._session is None:
            # Created here, inside the running loop, on first use; closed by close().
            connector = _Connector(limit=self._max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trace_configs=self._trace_configs or None,
                raise_for_status=False,
            )
        return self._session

    async def open(self) -> None:
        """Create the owned session now (inside the running loop)."""
        self._get_session()

    async def close(self) -> None:
        """Close the owned session; a borrowed one is left to its owner. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    # --- retries -------------------------------------------------------------------------------

    def _wait_gen(self) -> Generator[float, BaseException | None, None]:
        # backoff primes this generator as it starts, which is after the call's first attempt
        # (see call): the call's own start time, when set, keeps max_elapsed exact.
        started = _CALL_STARTED.get()
        if started is None:
            started = time.monotonic()
        exc = yield 0.0  # primed by backoff with send(None); the value is discarded
        retry = 0
        while True:
            retry += 1
            delay = self._policy.backoff_delay(retry)
            # Equal jitter: never zero, and thousands of clients do not retry in step.
            delay = random.uniform(delay / 2, delay)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() - started + delay > self._policy.max_elapsed:
                # No retry may start after max_elapsed, and none before Retry-After (backoff
                # would cut the wait short instead): stopping makes backoff re-raise exc.
                return
            exc = yield delay

    def _retrier(self, *, safe: bool) -> Any:
        return backoff.on_exception(
            self._wait_gen,
            PcsidError,
            max_tries=self._policy.max_attempts,
            max_time=self._policy.max_elapsed,
            jitter=None,  # _wait_gen jitters itself, so Retry-After is never jittered down
            giveup=lambda exc: not self.is_retryable(exc, safe=safe),
            on_backoff=self._on_backoff,
            logger=None,
        )

    def is_retryable(self, exc: BaseException, *, safe: bool) -> bool:
        """Whether the policy retries ``exc`` for a safe (GET) or single-use (POST) call."""
        policy = self._policy
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

    # --- one call ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        decode: Callable[[int, Mapping[str, str], bytes], _T],
        safe: bool,
        retries: bool = True,
        timeout: float | None = None,
        stats: CallStats | None = None,
    ) -> Coroutine[Any, Any, _T]:
        """Send one logical call, retrying per the policy, and return the decoded model.

        Args:
            method: the HTTP method.
            path: the path below the base URL (already validated and quoted).
            headers: the request headers.
            body: the request body, if any.
            decode: turns (status, headers, body) into the result, or raises.
            safe: whether the call may be repeated (GET) or carries a single-use OTP.
            retries: ``False`` for exactly one attempt (the poller schedules its own).
            timeout: this call's per-attempt timeout, if not the client's.
            stats: receives the number of attempts made, even when the call fails.
        """
        if self._closed:
            raise ClientClosedError("this PcsidClient is closed; create a new one")
        state = _CallState(method, path, headers, body, decode, safe)
        state.stats = stats
        if timeout is not None:
            state.timeout = aiohttp.ClientTimeout(total=timeout)
        if retries and self._policy.max_attempts > 1:
            # The first attempt runs without backoff: its per-call bookkeeping (clock reads,
            # a primed generator, a details dict, coroutine layers) costs over a tenth of a
            # successful call's CPU, and nearly every call succeeds at once. A retryable
            # failure is handed to backoff (see _attempt), which replays it as its own first
            # try, so tries, waits, Retry-After and max_elapsed (timed from here) are as if
            # backoff had run the call from the start.
            state.handover = True
            state.started = time.monotonic()
        # Not a coroutine itself: the caller awaits _attempt directly, one frame less.
        return self._attempt(state)

    async def _attempt(self, state: _CallState[_T]) -> _T:
        if state.replay is not None:  # the failed first attempt, made before backoff began
            failure, state.replay = state.replay, None
            raise failure
        try:
            state.attempt += 1
            if state.stats is not None:
                state.stats.attempts = state.attempt
            gate = self._gate
            if not gate.try_take():
                await gate.take()
            try:
                if not self._pacer.idle:
                    await self._pacer.wait()
                # The send, inline: one coroutine less per request.
                session = self._session
                if session is None or self._loop is None or self._closed:
                    session = self._get_session()
                trace = _SendTrace()
                debug = logger.isEnabledFor(logging.DEBUG)
                started = time.perf_counter() if debug else 0.0
                timeout = state.timeout or self._timeout
                deadline: _Deadline | None = None
                if _HAS_UNCANCEL and timeout.total is not None:
                    assert self._deadlines is not None  # made with the session
                    deadline = self._deadlines.start(timeout.total)
                    timeout = _NO_AIOHTTP_TIMER
                sending = _SENDING.set(trace)
                try:
                    async with session.request(
                        state.method,
                        self._base + state.path,
                        data=state.body,
                        headers=state.headers,
                        allow_redirects=False,
                        # A borrowed session may raise for status; we decode every answer.
                        raise_for_status=False,
                        timeout=timeout,
                    ) as response:
                        body = await response.read()
                        status = response.status
                        headers = response.headers
                except BaseException as exc:
                    if deadline is not None and deadline.close(exc):
                        deadline = None
                        # What asyncio.timeout raises, from the cancellation.
                        expired = TimeoutError()
                        expired.__cause__ = exc
                        raise self._timeout_error(state, trace, expired) from expired
                    deadline = None
                    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
                        raise self._timeout_error(state, trace, exc) from exc
                    if isinstance(exc, (aiohttp.ClientError, OSError)):
                        raise self._connection_error(state, trace, exc) from exc
                    raise
                finally:
                    _SENDING.reset(sending)
                    if deadline is not None:
                        deadline.close(None)
                if debug:
                    logger.debug(
                        "%s %s -> %d (attempt %d, %.1f ms)",
                        state.method,
                        state.path,
                        status,
                        state.attempt,
                        (time.perf_counter() - started) * 1000,
                    )
            finally:
                gate.give()
            if status in _PAUSING:
                self._maybe_pause(status, headers)
            return state.decode(status, headers, body)
        except PcsidError as exc:
            if not state.handover or not self.is_retryable(exc, safe=state.safe):
                raise
            state.replay = exc
        # The first attempt failed retryably: backoff takes over, replaying that failure as
        # its own first try (above), then retrying per the policy.
        state.handover = False
        retrying = self._retry_safe if state.safe else self._retry_unsafe
        token = _CALL_STARTED.set(state.started)
        try:
            result: _T = await retrying(state)
        finally:
            _CALL_STARTED.reset(token)
        return result

    def _maybe_pause(self, status: int, headers: Mapping[str, str]) -> None:
        seconds = parse_retry_after(headers.get("Retry-After"))
        if seconds:
            seconds = min(seconds, self._policy.max_retry_after)
            logger.info("server answered %d: pausing new requests for %.3f s", status, seconds)
            self._pacer.pause(seconds)

    def _reached(self, trace: _SendTrace, exc: BaseException) -> bool:
        if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
            return False  # no connection was ever established
        if self._traced:
            return trace.written
        return True  # a borrowed session cannot tell us: assume the worst

    def _timeout_error(
        self, state: _CallState[Any], trace: _SendTrace, exc: BaseException
    ) -> APITimeoutError:
        reached = self._reached(trace, exc)
        logger.debug(
            "%s %s -> timeout (attempt %d, may have reached server: %s)",
            state.method,
            state.path,
            state.attempt,
            reached,
        )
        seconds = (state.timeout or self._timeout).total
        return APITimeoutError(
            f"{state.method} {state.path}: no answer within {seconds} s"
            + (" (the request may have been processed)" if reached else ""),
            method=state.method,
            path=state.path,
            may_have_reached_server=reached,
        )

    def _connection_error(
        self, state: _CallState[Any], trace: _SendTrace, exc: BaseException
    ) -> APIConnectionError:
        reached = self._reached(trace, exc)
        logger.debug(
            "%s %s -> %s (attempt %d, may have reached server: %s)",
            state.method,
            state.path,
            type(exc).__name__,
            state.attempt,
            reached,
        )
        detail = _describe(exc)
        return APIConnectionError(
            f"{state.method} {state.path}: {detail}"
            + (" (the request may have been processed)" if reached else ""),
            method=state.method,
            path=state.path,
            may_have_reached_server=reached,
        )
