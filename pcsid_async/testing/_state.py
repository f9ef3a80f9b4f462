"""The fake's internal state: its mutable records and the attributes every part shares.

``_FakeState`` declares every attribute of a ``FakeClearTax``; each concern (activities,
registry, faults, observation, routes) is a class built on it, and ``FakeClearTax`` composes
them. Nothing here is public: the read-only snapshots handed out live in ``_records``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from pcsid_async.testing import _wire
from pcsid_async.testing._faults import FaultEndpoint, FaultPlan, _FaultDraw
from pcsid_async.testing._records import (
    ActivityOrigin,
    ActivityState,
    Endpoint,
    ProcessedRenewal,
    RecordedRequest,
)

if TYPE_CHECKING:
    from pcsid_async.testing._inject import _Injection

#: The endpoints a fault plan, an injection or a latency names (``Endpoint`` minus "other").
ENDPOINTS: tuple[FaultEndpoint, ...] = ("renew", "generate", "status", "register", "generate_csr")


class _Otp:
    __slots__ = ("expires_at", "used", "vat")

    def __init__(self, vat: str, expires_at: float) -> None:
        self.vat = vat
        self.expires_at = expires_at
        self.used = False


class _Device:
    __slots__ = (
        "checks",
        "common_name",
        "created_by",
        "device_id",
        "egs_serial_number",
        "failing_checks",
        "generations",
        "has_pcsid",
        "invoice_type",
        "pending_activity",
        "renew_error",
        "renewals",
        "vat",
    )

    def __init__(
        self,
        device_id: str,
        vat: str,
        *,
        has_pcsid: bool,
        checks: tuple[str, ...],
        failing_checks: dict[str, str],
        renew_error: tuple[str, str] | None,
    ) -> None:
        self.device_id = device_id
        self.vat = vat
        self.has_pcsid = has_pcsid
        self.checks = checks
        self.failing_checks = failing_checks
        self.renew_error = renew_error
        self.renewals = 0
        self.generations = 0
        self.pending_activity: str | None = None
        self.egs_serial_number: str | None = None
        self.common_name: str | None = None
        self.invoice_type: str | None = None
        self.created_by: Literal["add_device", "register", "generate_csr"] = "add_device"


class _Activity:
    __slots__ = (
        "activity_id",
        "checks",
        "completed_wall",
        "created_mono",
        "created_wall",
        "delay",
        "device",
        "device_id",
        "failing_checks",
        "origin",
        "polls",
        "polls_required",
        "state",
        "vat",
    )

    def __init__(
        self,
        activity_id: str,
        *,
        device_id: str | None,
        device: _Device | None,
        vat: str,
        origin: ActivityOrigin,
        checks: tuple[str, ...],
        failing_checks: dict[str, str],
        polls_required: int | None,
        delay: float | None,
    ) -> None:
        self.activity_id = activity_id
        self.device_id = device_id
        self.device = device
        self.vat = vat
        self.origin: ActivityOrigin = origin
        self.checks = checks
        self.failing_checks = failing_checks
        self.polls_required = polls_required
        self.delay = delay
        self.created_mono = time.monotonic()
        self.created_wall = datetime.now(timezone.utc)
        self.polls = 0
        self.state: ActivityState = "IN_PROGRESS"
        self.completed_wall: datetime | None = None


class _Exchange:
    """What the fake learns about one request while handling it (becomes a RecordedRequest)."""

    __slots__ = (
        "activity_id",
        "authorized",
        "device_id",
        "endpoint",
        "fault",
        "log_epoch",
        "log_index",
        "method",
        "path",
        "received_at",
        "vat",
    )

    def __init__(self, method: str, path: str, endpoint: Endpoint) -> None:
        self.method = method
        self.path = path
        self.endpoint: Endpoint = endpoint
        self.vat: str | None = None
        self.device_id: str | None = None
        self.activity_id: str | None = None
        self.fault: str | None = None
        self.received_at = 0.0
        self.authorized = False
        self.log_index = -1
        self.log_epoch = -1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _checks_of(checks: Sequence[str] | None) -> tuple[str, ...]:
    if checks is None:
        return _wire.CHECK_NAMES
    if isinstance(checks, str):
        raise TypeError("checks must be a sequence of check names, not a string")
    wanted = set(checks)
    unknown = wanted.difference(_wire.CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown check names {sorted(unknown)}; known: {_wire.CHECK_NAMES}")
    if not wanted:
        raise ValueError("checks must name at least one check")
    if len(wanted) != len(checks):
        raise ValueError("checks must not repeat a name")
    return tuple(name for name in _wire.CHECK_NAMES if name in wanted)


def _failing_of(
    failing_checks: Mapping[str, str] | None, checks: tuple[str, ...]
) -> dict[str, str]:
    if not failing_checks:
        return {}
    failing = dict(failing_checks)
    for name, message in failing.items():
        if name not in checks:
            raise ValueError(f"failing check {name!r} is not among the checks run: {checks}")
        if not isinstance(message, str) or not message.strip():
            raise ValueError(f"failing check {name!r} needs a non-empty message")
    return failing


def _non_blank(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


class _FakeState:
    """Every attribute of a fake, declared once for the classes that share them."""

    # configuration (set by FakeClearTax.__init__)
    _token: str
    _vats: tuple[str, ...]
    _vat_set: frozenset[str]
    _latency: dict[str, float]
    _activity_polls: int | None
    _activity_delay: float
    _renew_starts_activity: bool
    _any_otp: bool
    _sandbox_otp: bool
    _auto_register: bool
    _otp_ttl: float
    _faults: FaultPlan | None
    _retry_after: float
    _timestamp_format: _wire.TimestampFormat
    _host: str
    _port: int
    _ssl_context: ssl.SSLContext | None
    _record: bool
    _app: web.Application

    def _init_state(self, seed: int) -> None:
        """Create the empty registry, ledger, log and seeded generators."""
        self._fault_draw = _FaultDraw(seed)
        self._device_rng = random.Random(f"pcsid-fake/{seed}/devices")
        self._otp_rng = random.Random(f"pcsid-fake/{seed}/otps")
        self._activity_rng = random.Random(f"pcsid-fake/{seed}/activities")
        self._activity_counter = 0

        self._devices: dict[str, _Device] = {}
        self._serials: dict[tuple[str, str], str] = {}  # (VAT, EgsSerialNumber) -> device id
        self._otps: dict[str, _Otp] = {}
        self._sandbox_spent: set[str] = set()  # devices that used the sample OTP
        self._activities: dict[str, _Activity] = {}
        self._ledger: dict[str, list[ProcessedRenewal]] = {}
        self._injections: dict[str, deque[_Injection]] = {e: deque() for e in ENDPOINTS}

        self._log: list[RecordedRequest] = []
        self._log_epoch = 0
        self._counts: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0

        self._sleepers: set[asyncio.Future[None]] = set()
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed = False
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def _vat_of(self, vat: str | None) -> str:
        return self._vats[0] if vat is None else _non_blank(vat, "vat")

    @property
    def url(self) -> str:
        """The base URL to give the client, e.g. ``http://127.0.0.1:PORT/middle-east/ksa/einvoicing``.

        Raises:
            RuntimeError: before ``start()``.
        """
        if self._url is None:
            raise RuntimeError("the fake is not started: use `async with` or `await start()`")
        return self._url

    @property
    def vat(self) -> str:
        """The default VAT: the first of ``vats``."""
        return self._vats[0]
