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
import collections
import contextvars
import ipaddress
import logging
import math
import random
import ssl as ssl_module
import sys
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar

import aiohttp
import backoff
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from ._config import RetryPolicy
from ._decode import _request_id, parse_retry_after
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    InternalServerError,
    PcsidError,
    RateLimitError,
)
from ._hooks import RequestEvent, RequestHook, ResponseEvent, ResponseHook, describe, emit

__all__ = ["CallStats", "Decoder", "Transport"]

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


class CallStats:
    """Filled in by :meth:`Transport.call` for callers that report attempts (the batch)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


class _SendTrace:
    """Per-request trace context: whether aiohttp started writing this request."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = False


# The request the current task is sending through our own session (set around each send).
_SENDING: Final[contextvars.ContextVar[_SendTrace | None]] = contextvars.ContextVar(
    "pcsid_async_sending", default=None
)


# When the call whose retries backoff is running began (set around backoff by Transport.call).
_CALL_STARTED: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "pcsid_async_call_started", default=None
)


class _Connector(aiohttp.TCPConnector):
    """The owned session's connector: it marks the request in flight as written.

    aiohttp writes the request line and headers as soon as ``connect`` hands over a
    connection, with no suspension in between, so "got a connection" is "began writing":
    if it never happened, not one byte of the request went out. (An aiohttp TraceConfig
    tells the same but costs a trace object and five signals per request: about a tenth
    of a call's CPU.)
    """

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        trace = _SENDING.get()
        if trace is not None:
            trace.written = True
        return connection


class _Pacer:
    """A client-wide pause (server's Retry-After) and an optional requests-per-second spacing."""

    __slots__ = ("_interval", "_last_start", "_next_slot", "_paused_until")

    def __init__(self, rate_limit: float | None) -> None:
        self._interval = 1.0 / rate_limit if rate_limit else 0.0
        self._next_slot = 0.0
        self._last_start = -math.inf
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        """The loop time until which no new request may start."""
        return self._paused_until

    @property
    def idle(self) -> bool:
        """Whether no pause was ever asked for and there is no rate limit: nothing to wait for.

        Checked before :meth:`wait`, so the usual request skips a coroutine and a clock read.
        """
        return not (self._interval or self._paused_until)

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` from now (never shortens a running pause)."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(until, self._paused_until)

    async def wait(self) -> None:
        """Return when a new request may start."""
        loop = asyncio.get_running_loop()
        slot: float | None = None
        while True:
            now = loop.time()
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._interval:
                if slot is None:  # our place in line, kept across pauses and re-checks
                    slot = max(now, self._next_slot)
                    self._next_slot = slot + self._interval
                # Also one interval after the last actual start: when a busy loop wakes
                # overdue waiters together, they must not go out in a burst.
                start = max(slot, self._last_start + self._interval)
                if start > now:
                    await asyncio.sleep(start - now)
                    continue
                self._last_start = now
            return


class _Gate:
    """A FIFO counting gate: ``asyncio.Semaphore`` without its per-call coroutines.

    Taking a free slot is a plain method call (every request takes one); only a request
    that must queue awaits. A slot is handed straight to the oldest waiter, so a request
    arriving later never overtakes one already queued.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is queued; never waits."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait in line for a slot (after :meth:`try_take` said no)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Return a slot: to the oldest waiter still waiting, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


# Python 3.11 added Task.cancelling()/uncancel(), which tell our timer's cancellation from a
# caller's; 3.10 has neither, so there aiohttp's own timer is used.
_HAS_UNCANCEL: Final = sys.version_info >= (3, 11)
_NO_AIOHTTP_TIMER: Final = aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None)


class _Deadline:
    """One attempt's deadline: an entry of :class:`_Deadlines` (plain slots, no ``__init__``)."""

    __slots__ = ("bucket", "cancelling", "fired", "task")

    bucket: set[_Deadline]
    cancelling: int
    fired: bool
    task: asyncio.Task[Any]

    def close(self, exc: BaseException | None) -> bool:
        """End the deadline; ``True`` when ``exc`` is its own cancellation (a timeout).

        Like ``asyncio.timeout``'s exit: the CancelledError becomes a timeout only if nobody
        else asked to cancel the task meanwhile, so a caller's cancellation always wins.
        """
        self.bucket.discard(self)
        if not self.fired:
            return False
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (_HAS_UNCANCEL)
            mine = self.task.uncancel() <= self.cancelling
            return mine and isinstance(exc, asyncio.CancelledError)
        return False  # pragma: no cover


class _Deadlines:
    """Per-attempt deadlines of one client, with ``asyncio.timeout``'s semantics, sharing timers.

    aiohttp's own total timer un-cancels the task once per nested use, so a caller's
    cancellation that lands with it is turned into a timeout and retried away. Like
    ``asyncio.timeout`` (3.11+), a deadline here cancels its task when it expires and counts
    cancellations on exit (see :meth:`_Deadline.close`).

    The difference is cost. A timer per request means a Python ``TimerHandle``, a push onto
    the loop's heap (log n Python comparisons, and n grows with every cancelled handle until
    the loop cleans up) and a cancel. Here deadlines that expire in the same slice of time
    share one timer: each slice is 1/32 of the timeout (between 0.5 and 50 ms), and a
    deadline fires at the end of its slice, so up to that much late and never early. At
    thousands of requests a second most requests add themselves to a set and leave it.
    """

    __slots__ = ("_buckets", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[_Deadline]] = {}

    def start(self, seconds: float) -> _Deadline:
        """A deadline ``seconds`` from now for the current task."""
        loop = self._loop
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - call() only ever runs inside a task
            raise RuntimeError("a request deadline needs a running task")
        deadline = _Deadline()
        deadline.task = task
        deadline.cancelling = 0
        if sys.version_info >= (3, 11):  # pragma: no branch - only used there (_HAS_UNCANCEL)
            deadline.cancelling = task.cancelling()
        deadline.fired = False
        grain = min(50_000, max(500, int(seconds * 31_250)))  # 1/32 of it, in microseconds
        key = math.ceil((loop.time() + seconds) * 1_000_000 / grain) * grain
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            loop.call_at(key / 1_000_000, self._expire, key)
        bucket.add(deadline)
        deadline.bucket = bucket
        return deadline

    def _expire(self, key: int) -> None:
        for deadline in self._buckets.pop(key):
            deadline.fired = True
            deadline.task.cancel()


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        proxy: URL | None = None,
        trust_env: bool = False,
        on_request: RequestHook | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._proxy = proxy
        self._trust_env = trust_env
        self._on_request = on_request
        self._on_response = on_response
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
                proxy=self._proxy,
                trust_env=self._trust_env,
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
                if self._on_request is not None or self._on_response is not None:
                    self._request_event(state)
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
            answer = state.decode(status, headers, body)
            if state.sent_at is not None:
                self._response_event(state, status, _request_id(headers), None)
            return answer
        except PcsidError as exc:
            if state.sent_at is not None:
                self._response_event(state, None, None, exc)
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

    def _request_event(self, state: _CallState[Any]) -> None:
        state.sent_at = time.perf_counter()
        if self._on_request is not None:
            endpoint, template = describe(state.path)
            emit(self._on_request, RequestEvent(endpoint, state.method, template, state.attempt))

    def _response_event(
        self,
        state: _CallState[Any],
        status: int | None,
        request_id: str | None,
        exc: BaseException | None,
    ) -> None:
        assert state.sent_at is not None
        elapsed, state.sent_at = time.perf_counter() - state.sent_at, None
        if exc is not None:  # an answer's status and request id ride on its error, if any
            status = getattr(exc, "status_code", None)
            request_id = getattr(exc, "request_id", None)
        if self._on_response is not None:
            endpoint, template = describe(state.path)
            event = ResponseEvent(
                endpoint,
                state.method,
                template,
                state.attempt,
                status,
                elapsed,
                request_id,
                None if exc is None else type(exc),
            )
            emit(self._on_response, event)

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


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name host and port, never headers or bodies.
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without answering"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _CallState(Generic[_T]):
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
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.decode = decode
        self.safe = safe
        self.attempt = 0
        self.timeout: aiohttp.ClientTimeout | None = None
        self.stats: CallStats | None = None
        self.replay: PcsidError | None = None
        self.handover = False  # a retryable failure goes to backoff (first attempt only)
        self.started = 0.0  # time.monotonic() at the call's start, when it may retry
        self.sent_at: float | None = None  # perf_counter() at this attempt's send (hooks only)


def check_base_url(base_url: str | URL, *, ssl: ssl_module.SSLContext | bool) -> URL:
    """Validate ``base_url``: https (http only for loopback hosts), a host, no query."""
    try:
        url = URL(str(base_url))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"base_url is not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError("base_url must be an absolute https:// URL")
    loopback = _is_loopback_host(url.host)
    if url.scheme == "http" and not loopback:
        raise ValueError("base_url must use https (plain http is allowed only for loopback hosts)")
    if url.user or url.password:
        raise ValueError("base_url must not carry credentials")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    if ssl is False and not loopback:
        raise ValueError("ssl=False (no certificate verification) is allowed only for loopback")
    return url.with_path(url.path.rstrip("/")) if url.path != "/" else url.with_path("")
