"""Faults acted out: forced ones from ``inject()`` and random ones drawn from the ``FaultPlan``.

``_faults`` holds the public plan and the seeded draw; this module turns an injection or a drawn
name into a ``_Fault``: the status, headers and payload the routes then send (or the drop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pcsid_async.testing import _wire
from pcsid_async.testing._faults import FAULT_NAMES, FaultEndpoint, _check_endpoint
from pcsid_async.testing._state import _FakeState

#: Faults that answer in the server's place: the request is not processed.
ANSWERING_FAULTS: Final = frozenset({"rate_limit", "server_error", "http"})
_MALFORMED_VARIANTS: Final = ("truncated", "brace", "html", "empty")
_SERVER_ERROR_STATUSES: Final = (500, 502, 503, 504)
_SERVER_ERROR_BODIES: Final = ("json", "html", "empty")


class _Injection:
    __slots__ = ("body", "delay", "name", "remaining", "retry_after", "status")

    def __init__(
        self,
        name: str,
        times: int,
        status: int | None,
        retry_after: float | str | None,
        body: str | bytes | Mapping[str, Any] | Sequence[Any] | None,
        delay: float | None,
    ) -> None:
        self.name = name
        self.remaining = times
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.delay = delay


class _Fault:
    """One fault decided for one request, with everything needed to act it out."""

    __slots__ = ("content_type", "delay", "name", "payload", "retry_after", "status", "variant")

    def __init__(
        self,
        name: str,
        *,
        status: int = 200,
        retry_after: str | None = None,
        payload: bytes | None = None,
        content_type: str = _wire.JSON_TYPE,
        delay: float = 0.0,
        variant: str = "truncated",
    ) -> None:
        self.name = name
        self.status = status
        self.retry_after = retry_after
        self.payload = payload
        self.content_type = content_type
        self.delay = delay
        self.variant = variant


class _Injector(_FakeState):
    """``inject()`` and the choice of the fault (if any) for one eligible request."""

    def inject(
        self,
        endpoint: str,
        fault: str,
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: float | str | None = None,
        body: str | bytes | Mapping[str, Any] | Sequence[Any] | None = None,
        delay: float | None = None,
    ) -> None:
        """Force the next ``times`` eligible requests to ``endpoint`` to get ``fault``.

        Deterministic, for unit tests; takes precedence over the random plan (whose draw still
        happens, so the plan's sequence is unaffected). Injections queue up in call order.
        Eligible means past the header and body-shape checks, like random faults.

        Args:
            endpoint: ``"renew"``, ``"generate"``, ``"status"``, ``"register"`` or
                ``"generate_csr"``.
            fault: a name from ``FAULT_NAMES``, or ``"http"``: a plain error answer with
                ``status`` and a bare error object body (not processed).
            times: how many requests get it.
            status: for ``server_error`` (default 500) and ``http`` (required).
            retry_after: ``Retry-After`` for ``rate_limit``, ``server_error`` and ``http``:
                seconds (whole seconds from 1 up, rounded up; a decimal such as ``0.05`` below
                1, which real servers never send) or a string sent verbatim (e.g. an HTTP
                date). Default: ``retry_after`` of the fake for 429s and 503s, none otherwise.
            body: the answer body for ``rate_limit``, ``server_error``, ``http`` and
                ``malformed``: text/bytes verbatim, other values as JSON. Defaults: a bare
                error object; for ``malformed`` the normal body cut in half.
            delay: seconds a ``slow`` answer waits (default: the plan's ``slow_delay``, else
                5).

        Raises:
            ValueError: on an unknown endpoint/fault or an option the fault does not use.
        """
        checked = _check_endpoint(endpoint)
        if fault not in FAULT_NAMES and fault != "http":
            raise ValueError(f"fault must be one of {(*FAULT_NAMES, 'http')}, got {fault!r}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        if fault == "http" and status is None:
            raise ValueError("the 'http' fault needs a status")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        if status is not None and fault not in ("server_error", "http"):
            raise ValueError(f"status does not apply to the {fault!r} fault")
        if retry_after is not None and fault not in ANSWERING_FAULTS:
            raise ValueError(f"retry_after does not apply to the {fault!r} fault")
        if body is not None and fault not in (*ANSWERING_FAULTS, "malformed"):
            raise ValueError(f"body does not apply to the {fault!r} fault")
        if delay is not None and fault != "slow":
            raise ValueError(f"delay does not apply to the {fault!r} fault")
        if delay is not None and not delay >= 0.0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        self._injections[checked].append(_Injection(fault, times, status, retry_after, body, delay))

    def _pick_fault(self, endpoint: FaultEndpoint) -> _Fault | None:
        plan = self._faults
        drawn = None
        if plan is not None:
            drawn = self._fault_draw.draw(endpoint, plan.for_endpoint(endpoint))
        queue = self._injections[endpoint]
        if queue:
            injection = queue[0]
            injection.remaining -= 1
            if injection.remaining <= 0:
                queue.popleft()
            return self._injected_fault(endpoint, injection)
        if drawn is None:
            return None
        return self._random_fault(endpoint, drawn)

    def _retry_after_header(self, value: float | str | None, default: bool) -> str | None:
        if isinstance(value, str):
            return value
        if value is None:
            return _wire.format_retry_after(self._retry_after) if default else None
        return _wire.format_retry_after(value)

    def _slow_delay(self, endpoint: FaultEndpoint) -> float:
        plan = self._faults
        return plan.for_endpoint(endpoint).slow_delay if plan is not None else 5.0

    def _injected_fault(self, endpoint: FaultEndpoint, injection: _Injection) -> _Fault:
        name = injection.name
        payload: bytes | None = None
        content_type = _wire.JSON_TYPE
        if injection.body is not None:
            payload, content_type = _wire.custom_body(injection.body)
        if name == "rate_limit":
            return _Fault(
                name,
                status=429,
                retry_after=self._retry_after_header(injection.retry_after, default=True),
                payload=_wire.RATE_LIMITED_BODY if payload is None else payload,
                content_type=content_type,
            )
        if name in ("server_error", "http"):
            status = injection.status if injection.status is not None else 500
            return _Fault(
                name,
                status=status,
                retry_after=self._retry_after_header(
                    injection.retry_after, default=status in (429, 503)
                ),
                payload=_wire.plain_error_body(status) if payload is None else payload,
                content_type=content_type,
            )
        if name == "slow":
            delay = injection.delay if injection.delay is not None else self._slow_delay(endpoint)
            return _Fault(name, delay=delay)
        if name == "malformed":
            return _Fault(name, payload=payload, content_type=content_type)
        return _Fault(name)

    def _random_fault(self, endpoint: FaultEndpoint, name: str) -> _Fault:
        rng = self._fault_draw.rng(endpoint)
        if name == "rate_limit":
            return _Fault(
                name,
                status=429,
                retry_after=_wire.format_retry_after(self._retry_after),
                payload=_wire.RATE_LIMITED_BODY,
            )
        if name == "server_error":
            status = rng.choice(_SERVER_ERROR_STATUSES)
            kind = rng.choice(_SERVER_ERROR_BODIES)
            if kind == "json":
                payload, content_type = _wire.SERVER_ERROR_BODY, _wire.JSON_TYPE
            elif kind == "html":
                payload, content_type = _wire.html_page(status), _wire.HTML_TYPE
            else:
                payload, content_type = b"", "text/plain"
            retry_after = _wire.format_retry_after(self._retry_after) if status == 503 else None
            return _Fault(
                name,
                status=status,
                retry_after=retry_after,
                payload=payload,
                content_type=content_type,
            )
        if name == "slow":
            return _Fault(name, delay=self._slow_delay(endpoint))
        if name == "malformed":
            return _Fault(name, variant=rng.choice(_MALFORMED_VARIANTS))
        return _Fault(name)
