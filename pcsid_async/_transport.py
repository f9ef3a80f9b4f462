"""The one place that touches aiohttp: session ownership, pacing, timeouts, retries.

Every request goes through :meth:`Transport.call`:

1. a concurrency gate (at or below the connector's limit, so no request burns its timeout
   queueing for a pooled connection: aiohttp counts pool-queue time against the timeout);
2. the pacer: a client-wide pause while a server-sent ``Retry-After`` runs, then the optional
   ``rate_limit`` spacing;
3. the request (an owned session is ``_session``'s), with redirects off and a per-attempt
   timeout;
4. translation of aiohttp's errors into ours, deciding ``may_have_reached_server`` from
   whether aiohttp actually began writing the request (our connector tells us);
5. the caller's decoder, then the retry decision, driven by ``backoff``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, TypeVar

import aiohttp
from yarl import URL

from ._bounded import declared_length, read_first, read_rest
from ._config import RetryPolicy
from ._deadlines import HAS_UNCANCEL as _HAS_UNCANCEL
from ._deadlines import NO_AIOHTTP_TIMER as _NO_AIOHTTP_TIMER
from ._deadlines import Deadline as _Deadline
from ._deadlines import Deadlines as _Deadlines
from ._decode import _request_id, parse_retry_after
from ._errors import ClientClosedError, PcsidError
from ._failures import send_failure
from ._hooks import RequestHook, ResponseHook, request_event, response_event
from ._loops import close_with_loop, other_loop
from ._pacing import Gate as _Gate
from ._pacing import Pacer as _Pacer
from ._retrying import CALL_STARTED as _CALL_STARTED
from ._retrying import CallState as _CallState
from ._retrying import CallStats, Retries
from ._session import _SENDING, _SendTrace, new_session
from ._validate import check_base_url

__all__ = ["CallStats", "Decoder", "Transport", "check_base_url"]

_T = TypeVar("_T")
Decoder = Callable[[int, Mapping[str, str], bytes], _T]

logger: Final = logging.getLogger("pcsid_async")

# Statuses whose Retry-After pauses every request of the client.
_PAUSING: Final = frozenset({429, 503})
# What a POST with the client's default headers adds to the owned session's own.
_POST_ONLY: Final = {"Content-Type": "application/json"}


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
        max_response_bytes: int,
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
        self._max_response_bytes = max_response_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._policy = retry
        self._session = session
        self._owns_session = session is None
        # A borrowed session has its own connector, not our _Connector, so for it "reached
        # the server" falls back to the exception type (see _failures.send_failure).
        self._traced = session is None
        self._max_connections = max_connections
        self._trace_configs = list(trace_configs or ())
        self._ssl = ssl
        self._gate = _Gate(max_connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: _Deadlines | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._pacer = _Pacer(rate_limit)
        self._closed = False
        # The owned session sends the client's default headers itself (set_default_headers).
        self._get_headers: Mapping[str, str] | None = None
        self._post_headers: Mapping[str, str] | None = None
        self.set_policy(retry)

    def set_policy(self, retry: RetryPolicy) -> None:
        """Apply a retry policy (at construction, and in a ``with_options`` view)."""
        self._policy = retry
        self._may_retry = retry.max_attempts > 1
        # Configured here, per client, not by import-time decorators. Two retriers, because
        # backoff's giveup sees only the exception and safety is a property of the call.
        self._retries = Retries(retry)
        self._retry_safe = self._retries.wrap(self._attempt, safe=True)
        self._retry_unsafe = self._retries.wrap(self._attempt, safe=False)

    def set_default_headers(self, get: Mapping[str, str], post: Mapping[str, str]) -> None:
        """The client's default GET and POST headers (before the session exists).

        The owned session is made with the GET ones as its own default headers, so a call
        passing exactly these objects sends them without aiohttp merging them per request
        (a POST adds only its Content-Type). A borrowed session, or one that may use a
        proxy, gets every header per call.
        """
        if self._proxy is None and not self._trust_env:
            # aiohttp merges a session's default headers into a proxy's too (the CONNECT
            # would carry the token in clear): through a proxy, every header goes per call.
            self._get_headers, self._post_headers = get, post

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def pacer(self) -> _Pacer:
        """The client-wide pacer (the batch engine reads its pause)."""
        return self._pacer

    def check_loop(self) -> None:
        """Refuse a use from another event loop than the one this client is bound to.

        Raises:
            EventLoopMismatchError: the client was first used in another loop.
        """
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            raise other_loop(loop, "used")

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this PcsidClient is closed; create a new one")
        self.check_loop()
        if self._loop is None:  # bound to the first loop that uses it
            self._loop = asyncio.get_running_loop()
            self._deadlines = _Deadlines(self._loop)
        if self._session is None:
            # Created here, inside the running loop, on first use; closed by close().
            self._session = new_session(
                self._max_connections,
                ssl=self._ssl,
                headers=self._get_headers,
                timeout=self._timeout,
                trace_configs=self._trace_configs,
                proxy=self._proxy,
                trust_env=self._trust_env,
            )
            self._closer = close_with_loop(self._session)
        return self._session

    async def open(self) -> None:
        """Create the owned session now (inside the running loop)."""
        self._get_session()

    async def close(self) -> None:
        """Close the owned session; a borrowed one is left to its owner. Idempotent.

        From another loop than the client's: refused while that loop lives (its connections
        are its own); once it has closed, the client is marked closed and nothing is awaited
        (``asyncio.run`` and other runners closed the session as the loop shut down).
        """
        loop = self._loop
        dead = loop is not None and loop.is_closed()
        if loop is not None and not dead and loop is not asyncio.get_running_loop():
            raise other_loop(loop, "closed")
        self._closed = True
        session, self._session = self._session, None
        closer, self._closer = self._closer, None
        if dead:
            return
        if closer is not None:
            await closer.aclose()
        if session is not None and self._owns_session:
            await session.close()

    def is_retryable(self, exc: BaseException, *, safe: bool) -> bool:
        """Whether the policy retries ``exc`` for a safe (GET) or single-use (POST) call."""
        return self._retries.is_retryable(exc, safe=safe)

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
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            raise other_loop(loop, "used")
        # The first attempt runs without backoff: its per-call bookkeeping (clock reads, a
        # primed generator, a details dict, coroutine layers) costs over a tenth of a
        # successful call's CPU, and nearly every call succeeds at once. A retryable failure
        # is handed to backoff (see _attempt), which replays it as its own first try, so
        # tries, waits, Retry-After and max_elapsed (timed from here) are as if backoff had
        # run the call from the start.
        state = _CallState(
            method,
            path,
            headers,
            body,
            decode,
            safe,
            None if timeout is None else aiohttp.ClientTimeout(total=timeout),
            stats,
            time.monotonic() if retries and self._may_retry else None,
        )
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
                # The request itself is inline, not a coroutine of its own: every layer of
                # coroutines is paid again each time the call suspends and resumes.
                session = self._session
                if session is None or self._loop is None or self._closed:
                    session = self._get_session()
                trace = _SendTrace()
                debug = logger.isEnabledFor(logging.DEBUG)
                started = time.perf_counter() if debug else 0.0
                timeout = state.timeout or self._timeout
                deadline: _Deadline | None = None
                if _HAS_UNCANCEL and timeout.total is not None:
                    deadline = self._deadlines.start(timeout.total)  # type: ignore[union-attr]
                    timeout = _NO_AIOHTTP_TIMER
                if self._on_request is not None or self._on_response is not None:
                    request_event(self._on_request, state)
                headers: Mapping[str, str] | None = state.headers
                if self._owns_session:  # its defaults are the client's (set_default_headers)
                    if headers is self._get_headers:
                        headers = None
                    elif headers is self._post_headers:
                        headers = _POST_ONLY
                sending = _SENDING.set(trace)
                response: aiohttp.ClientResponse | None = None
                try:
                    # Awaited, not entered: ``async with`` adds five coroutines per request;
                    # its exit is release() (which cancels a writer still running) and a wait
                    # for that writer, and release() frees the connection once it stopped.
                    response = await session.request(
                        state.method,
                        self._base + state.path,
                        data=state.body,
                        headers=headers,
                        allow_redirects=False,
                        # A borrowed session may raise for status; we decode every answer.
                        raise_for_status=False,
                        timeout=timeout,
                    )
                    limit = self._max_response_bytes
                    length = declared_length(response, limit, method=state.method, path=state.path)
                    body = await read_first(response)
                    if length is None or len(body) != length:
                        body = await read_rest(
                            response, body, limit, method=state.method, path=state.path
                        )
                except BaseException as exc:
                    seconds = (state.timeout or self._timeout).total
                    ours = send_failure(state, exc, trace, self._traced, deadline, seconds)
                    deadline = None  # closed by send_failure
                    if ours is None:
                        raise
                    raise ours from ours.__cause__
                finally:
                    _SENDING.reset(sending)
                    if response is not None:
                        response.release()
                    if deadline is not None:
                        deadline.close(None)
            finally:
                gate.give()
            status = response.status
            headers = response.headers
            if debug:
                logger.debug(
                    "%s %s -> %d (attempt %d, %.1f ms)",
                    state.method,
                    state.path,
                    status,
                    state.attempt,
                    (time.perf_counter() - started) * 1000,
                )
            if status in _PAUSING:
                self._maybe_pause(status, headers)
            answer = state.decode(status, headers, body)
            if state.sent_at is not None:
                response_event(self._on_response, state, status, _request_id(headers), None)
            return answer
        except PcsidError as exc:
            if state.sent_at is not None:
                response_event(self._on_response, state, None, None, exc)
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
