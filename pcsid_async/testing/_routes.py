"""The HTTP layer: one aiohttp handler per row of ``ROUTES``, and the order a request goes in.

``_exchange`` is the pipeline ``FakeClearTax``'s docstring describes: read the body, check
headers and body shape, pick a fault, wait the latency, act out answering faults, process
(``Route.process``), then act out the faults that come after processing. A catch-all route
answers every other path 404 (or 405 for a known path with the wrong method).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from aiohttp import web

from pcsid_async.testing import _wire
from pcsid_async.testing._endpoints import ROUTES, Call, Route, _Endpoints
from pcsid_async.testing._inject import ANSWERING_FAULTS, _Fault, _Injector
from pcsid_async.testing._observe import _Observer
from pcsid_async.testing._state import _Exchange, _resolve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _path_matches(pattern: str, path: str) -> bool:
    """Whether ``path`` fits an aiohttp pattern with at most one ``{variable}`` segment."""
    if "{" not in pattern:
        return path == pattern
    prefix, rest = pattern.split("{", 1)
    suffix = rest.split("}", 1)[1]
    return len(path) > len(prefix) + len(suffix) and (
        path.startswith(prefix) and path.endswith(suffix)
    )


class _Http(_Endpoints, _Injector, _Observer):
    """Serving: the application, its handlers and the request pipeline."""

    def _build_app(self) -> web.Application:
        app = web.Application()
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._handler(route))
        app.router.add_route("*", "/{tail:.*}", self._handler(None))
        app.on_shutdown.append(self._on_shutdown)
        return app

    def _handler(self, route: Route | None) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route)

        return handle

    async def _on_shutdown(self, app: web.Application) -> None:
        self._wake_sleepers()

    def _wake_sleepers(self) -> None:
        self._closing = True
        for future in list(self._sleepers):
            _resolve(future)

    async def _serve(self, request: web.Request, route: Route | None) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        connection = request.task
        if connection not in self._connection_tasks:
            self._connection_tasks.add(connection)
            connection.add_done_callback(self._connection_tasks.discard)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        endpoint = "other" if route is None else route.endpoint
        exchange = _Exchange(request.method, request.path, endpoint)
        status: int | None = None
        answered: float | None = None
        try:
            response = await self._exchange(request, exchange, route)
            transport = request.transport
            if response is None:
                if transport is not None:
                    transport.abort()
                # Never delivered: writing to the closed transport fails and aiohttp treats
                # that as the client having gone, quietly.
                return web.Response(status=204)
            if transport is not None and not transport.is_closing():
                status = response.status
                answered = time.monotonic()
            return response
        finally:
            self._in_flight -= 1
            if task is not None:
                self._handler_tasks.discard(task)
            if exchange.log_epoch == self._log_epoch and exchange.log_index >= 0:
                self._log[exchange.log_index] = self._record_of(exchange, status, answered)

    async def _exchange(
        self, request: web.Request, ex: _Exchange, route: Route | None
    ) -> web.Response | None:
        """Handle one request; ``None`` means drop the connection without answering."""
        if self._closing:
            return None
        raw = b""
        if route is not None and route.body != "none":
            try:
                raw = await request.read()
            except ConnectionError:
                return None
        ex.received_at = time.monotonic()
        problem = self._check_headers(request, ex)
        call, refusal = self._call_of(request, ex, route, raw)
        if route is None or problem is None:
            problem = refusal
        fault = None
        if problem is None and route is not None:
            fault = self._pick_fault(route.endpoint)
            if fault is not None:
                ex.fault = fault.name
        self._count_and_log(ex)

        if not await self._sleep(self._latency[ex.endpoint]):
            return None
        if problem is not None or route is None:
            return problem
        if fault is not None:
            if fault.name in ANSWERING_FAULTS:
                return self._fault_answer(fault)
            if fault.name == "drop_before":
                return None
        status, body = route.process(self, cast(str, ex.vat), call)
        answered_id = body.get("DeviceId")
        if ex.device_id is None and isinstance(answered_id, str):
            ex.device_id = answered_id  # register-device, generate-csr: the device made
        return await self._after_processing(status, body, fault)

    def _call_of(
        self, request: web.Request, ex: _Exchange, route: Route | None, raw: bytes
    ) -> tuple[Call, web.Response | None]:
        """The request's fields, and the answer refusing it for its shape or path, if any."""
        if route is None:
            return Call(), self._other_response(request)
        if route.body != "none":
            if route.body == "onboarding":
                device_id, otp, errors = _wire.parse_onboarding_body(raw)
                ex.device_id = device_id
                call = Call(device_id=device_id, otp=otp)
            else:
                details, otp, errors = _wire.parse_device_body(
                    raw, with_otp=route.body == "device_otp"
                )
                call = Call(otp=otp, details=details)
            refusal = None
            if errors:
                refusal = self._json(400, _wire.failed_body(errors, status_endpoint=False))
            return call, refusal
        activity_id = request.match_info["activity_id"]
        ex.activity_id = activity_id
        known = self._activities.get(activity_id)
        if known is not None:
            ex.device_id = known.device_id
        return Call(activity_id=activity_id), None

    async def _after_processing(
        self, status: int, body: dict[str, Any], fault: _Fault | None
    ) -> web.Response | None:
        """Act out a fault that comes after processing (or none): the answer, or a drop."""
        if fault is not None:
            name = fault.name
            if name == "drop_after":
                return None
            if name == "slow":
                if not await self._sleep(fault.delay):
                    return None
            elif name == "malformed":
                return self._malformed(status, body, fault)
            elif name == "extra_fields":
                _wire.add_extra_fields(body)
        return self._json(status, body)

    async def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; return False if the fake began closing meanwhile."""
        if self._closing:
            return False
        if delay <= 0.0:
            return True
        loop = asyncio.get_running_loop()
        # On the monotonic clock: uvloop's timers run on a cached millisecond clock and can
        # fire up to 1 ms early; a latency the fake promises is never cut short.
        due = time.monotonic() + delay
        while not self._closing and (left := due - time.monotonic()) > 0:
            future: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(left, _resolve, future)
            self._sleepers.add(future)
            try:
                await future
            finally:
                timer.cancel()
                self._sleepers.discard(future)
        return not self._closing

    def _check_headers(self, request: web.Request, ex: _Exchange) -> web.Response | None:
        headers = request.headers
        vat = headers.get("vat")
        ex.vat = vat or None
        token = headers.get("x-cleartax-auth-token")
        if not token or token != self._token:
            return web.Response(
                status=401, body=_wire.AUTH_FAILED_BODY, content_type=_wire.JSON_TYPE
            )
        if vat is None or not vat.strip():
            errors = [_wire.error("6002", "vat header is mandatory", path="vat")]
            body = _wire.failed_body(errors, status_endpoint=ex.endpoint == "status")
            return self._json(400, body)
        if vat not in self._vat_set:
            return web.Response(status=403, body=_wire.NOT_ADMIN_BODY, content_type=_wire.JSON_TYPE)
        ex.authorized = True
        return None

    @staticmethod
    def _other_response(request: web.Request) -> web.Response:
        for route in ROUTES:
            if _path_matches(route.path, request.path):
                return web.Response(
                    status=405,
                    body=_wire.METHOD_NOT_ALLOWED_BODY,
                    content_type=_wire.JSON_TYPE,
                    headers={"Allow": route.method},
                )
        return web.Response(status=404, body=_wire.NOT_FOUND_BODY, content_type=_wire.JSON_TYPE)

    @staticmethod
    def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, body=_wire.encode(body), content_type=_wire.JSON_TYPE, headers=headers
        )

    @staticmethod
    def _fault_answer(fault: _Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        return web.Response(
            status=fault.status,
            body=fault.payload or b"",
            content_type=fault.content_type,
            headers=headers,
        )

    @staticmethod
    def _malformed(status: int, body: Any, fault: _Fault) -> web.Response:
        if fault.payload is not None:
            payload = fault.payload
        elif fault.variant == "truncated":
            whole = _wire.encode(body)
            payload = whole[: len(whole) // 2]
        elif fault.variant == "brace":
            payload = b"{"
        elif fault.variant == "html":
            payload = _wire.html_page(502)
        else:
            payload = b""
        return web.Response(status=status, body=payload, content_type=fault.content_type)
