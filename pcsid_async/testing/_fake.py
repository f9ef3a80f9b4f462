"""``FakeClearTax``: an in-process fake of ClearTax's KSA onboarding API, and its runner.

The fake speaks only the JSON wire format of the contract (``cleartax-pcsid.md``) and imports
nothing from the rest of ``pcsid_async``, so it stays an independent referee of the client.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import ssl
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from aiohttp import web

from pcsid_async.testing import _wire
from pcsid_async.testing._faults import (
    FAULT_NAMES,
    FaultEndpoint,
    FaultPlan,
    _check_endpoint,
    _FaultDraw,
)
from pcsid_async.testing._records import (
    ActivityOrigin,
    ActivityState,
    ActivityView,
    DeviceView,
    Endpoint,
    ProcessedRenewal,
    RecordedRequest,
    SampleCredentials,
)

_ENDPOINTS: Final[tuple[FaultEndpoint, ...]] = ("renew", "generate", "status")
_LOG_ENDPOINTS: Final = ("renew", "generate", "status", "other")
_ANSWERING_FAULTS: Final = frozenset({"rate_limit", "server_error", "http"})
_MALFORMED_VARIANTS: Final = ("truncated", "brace", "html", "empty")
_SERVER_ERROR_STATUSES: Final = (500, 502, 503, 504)
_SERVER_ERROR_BODIES: Final = ("json", "html", "empty")

# Handlers are woken when the fake closes, so this only bounds a handler stuck elsewhere
# (say, a client that sent headers but never its body) instead of aiohttp's 60 s default.
_SHUTDOWN_TIMEOUT: Final = 1.0

_MAX_OTPS: Final = 900_000  # of the 10**6 six-digit strings: random picks stay fast


class _Otp:
    __slots__ = ("expires_at", "used", "vat")

    def __init__(self, vat: str, expires_at: float) -> None:
        self.vat = vat
        self.expires_at = expires_at
        self.used = False


class _Device:
    __slots__ = (
        "checks",
        "device_id",
        "failing_checks",
        "generations",
        "has_pcsid",
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


def _check_log_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in _LOG_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {_LOG_ENDPOINTS} or None, got {endpoint!r}")


def _non_blank(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


class FakeClearTax:
    """A fake ClearTax KSA onboarding server on loopback, for tests, demos and benchmarks.

    Serves ``renew-pcsid``, ``generate-csid`` and ``pcsid-status`` under the real API's path
    prefix, with the contract's status codes and body shapes, an in-memory device registry,
    single-use OTPs, PCSID generation activities, a request log, a ledger of performed
    renewals and seeded fault injection. Not thread-safe: use it from one event loop.

    How a request is handled, in order:

    1. The body of a POST is read.
    2. Headers: a missing, empty or wrong ``x-cleartax-auth-token`` answers 401 (bare error
       object, ``ErrorCode 100401``); a missing or blank ``vat`` answers 400 (``ErrorList``
       with ``Path: "vat"``); a VAT the user is not an Admin for answers 403 (bare error
       object, ``ErrorCode 5002``).
    3. Body shape (POSTs): not a JSON object, or a missing/blank ``DeviceId`` or ``Otp``
       answers 400 with one ``ErrorList`` entry per problem (``Path`` names the field).
    4. A request that passed 2 and 3 is *eligible* for a fault: a forced one from
       ``inject()``, else one drawn from the ``FaultPlan``. Other requests never get a fault
       and never use up an injection.
    5. ``latency`` seconds pass (every answer waits for them, faulted or not).
    6. Faults that answer in the server's place (``rate_limit``, ``server_error``, ``http``)
       or drop first (``drop_before``) act here: the request is not processed.
    7. Processing, with no pause between check and change (so two concurrent requests cannot
       both use one OTP): the OTP must be valid (else 400 ``Invalid-OTP``); the device must
       exist and belong to the VAT (else 400 ``6003``); its state must allow the call
       (renew: it has a PCSID, else 400 ``6002``, and no planted ``renew_error``; generate: no
       PCSID and no generation in progress, else 400 ``6002``). Only a request that passes
       all of it is performed: the OTP is consumed, the device's counters change and a ledger
       entry is written. A status request counts as a poll and may end the activity.
    8. Faults that act after processing act here: ``drop_after``, ``slow``, ``malformed``,
       ``extra_fields``.

    A dropped connection is aborted without a byte of answer: an aiohttp client raises
    ``ServerDisconnectedError``. Note that aiohttp itself silently resends an idempotent
    request (the status GET) once after such a disconnect, so a client only sees a dropped
    status poll when two drops come in a row.

    Example::

        async with FakeClearTax(activity_polls=2) as fake:
            device = fake.add_device()
            otp = fake.issue_otp()
            ...  # point the client at fake.url with token fake.token and VAT fake.vat
            assert len(fake.ledger[device]) == 1

    Args:
        token: the one valid ``x-cleartax-auth-token``.
        vats: the VATs the token's user is an Admin for (at least one); any other non-empty
            VAT answers 403. The first is the default VAT of devices and OTPs.
        latency: seconds every answer waits (also 401s and faults), or a mapping from
            ``"renew"``/``"generate"``/``"status"`` to seconds (missing endpoints: 0).
            The wait comes before processing.
        activity_polls: an activity turns terminal on this status poll (N >= 1) ...
        activity_delay: ... or this many seconds after creation, whichever comes first.
            ``0`` means no time trigger; with ``activity_polls=None`` as well, an activity is
            terminal on its first poll.
        renew_starts_activity: a successful renewal also starts an activity and returns its
            ``PcsidGenerationActivityId``.
        any_otp: accept any non-empty OTP, any number of times (OTPs are then never consumed;
            the ledger still records them). Without it only OTPs from ``issue_otp`` work, once
            each; the sandbox's sample OTP ``"123345"`` is then just an unknown OTP.
        auto_register: an unknown device id is registered on the fly (for renew with a
            PCSID, for generate without one) instead of answering 400.
        otp_ttl: lifetime in seconds of OTPs from ``issue_otp`` (ZATCA's is one hour).
        faults: the random ``FaultPlan``, or ``None`` for none; see also ``inject``.
        retry_after: seconds sent in ``Retry-After`` for fault 429s and 503s (see
            ``inject`` for the formatting: real servers send whole seconds).
        timestamp_format: ``"iso"`` (``2026-11-22T10:15:30.120Z``), ``"epoch_s"`` or
            ``"epoch_ms"`` (integers) for ``CreatedAt``/``UpdatedAt``/``CompletedAt``.
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one (read it back from ``url``).
        ssl_context: serve HTTPS with this server-side context.
        seed: seeds every random choice (fault draws, device ids, OTPs, activity ids).
        record_requests: keep the request log (``requests``, ``request_times`` and filtered
            ``count``). Turn off for long benchmarks: counters and the ledger are kept anyway.
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        vats: Iterable[str] = ("300000000000003",),
        latency: float | Mapping[str, float] = 0.0,
        activity_polls: int | None = None,
        activity_delay: float = 0.0,
        renew_starts_activity: bool = False,
        any_otp: bool = False,
        auto_register: bool = False,
        otp_ttl: float = 3600.0,
        faults: FaultPlan | None = None,
        retry_after: float = 1.0,
        timestamp_format: str = "iso",
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        seed: int = 0,
        record_requests: bool = True,
    ) -> None:
        self._token = _non_blank(token, "token")
        self._vats = tuple(_non_blank(vat, "each VAT") for vat in vats)
        if not self._vats:
            raise ValueError("vats must name at least one VAT")
        self._vat_set = frozenset(self._vats)
        self._latency = self._latency_of(latency)
        if activity_polls is not None and activity_polls < 1:
            raise ValueError(f"activity_polls must be >= 1 or None, got {activity_polls!r}")
        if not activity_delay >= 0.0:
            raise ValueError(f"activity_delay must be >= 0, got {activity_delay!r}")
        if not otp_ttl >= 0.0:
            raise ValueError(f"otp_ttl must be >= 0, got {otp_ttl!r}")
        if not retry_after >= 0.0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after!r}")
        if timestamp_format not in _wire.TIMESTAMP_FORMATS:
            raise ValueError(
                f"timestamp_format must be one of {_wire.TIMESTAMP_FORMATS}, "
                f"got {timestamp_format!r}"
            )
        self._activity_polls = activity_polls
        self._activity_delay = activity_delay
        self._renew_starts_activity = renew_starts_activity
        self._any_otp = any_otp
        self._auto_register = auto_register
        self._otp_ttl = otp_ttl
        self._faults = faults
        self._retry_after = retry_after
        self._timestamp_format = cast(_wire.TimestampFormat, timestamp_format)
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._record = record_requests

        self._fault_draw = _FaultDraw(seed)
        self._device_rng = random.Random(f"pcsid-fake/{seed}/devices")
        self._otp_rng = random.Random(f"pcsid-fake/{seed}/otps")
        self._activity_rng = random.Random(f"pcsid-fake/{seed}/activities")
        self._activity_counter = 0

        self._devices: dict[str, _Device] = {}
        self._otps: dict[str, _Otp] = {}
        self._activities: dict[str, _Activity] = {}
        self._ledger: dict[str, list[ProcessedRenewal]] = {}
        self._injections: dict[str, deque[_Injection]] = {e: deque() for e in _ENDPOINTS}

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

        self._app = web.Application()
        router = self._app.router
        router.add_post(_wire.RENEW_PATH, self._handle_renew)
        router.add_post(_wire.GENERATE_PATH, self._handle_generate)
        router.add_get(_wire.STATUS_PATH, self._handle_status, allow_head=False)
        router.add_route("*", "/{tail:.*}", self._handle_other)
        self._app.on_shutdown.append(self._on_shutdown)

    @staticmethod
    def _latency_of(latency: float | Mapping[str, float]) -> dict[str, float]:
        values: dict[str, float]
        if isinstance(latency, Mapping):
            unknown = set(latency).difference(_ENDPOINTS)
            if unknown:
                raise ValueError(f"latency keys must be among {_ENDPOINTS}, got {sorted(unknown)}")
            values = {e: float(latency.get(e, 0.0)) for e in _ENDPOINTS}
        else:
            values = dict.fromkeys(_ENDPOINTS, float(latency))
        if not all(v >= 0.0 for v in values.values()):
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        values["other"] = 0.0
        return values

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeClearTax:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start serving on ``host``/``port``; afterwards ``url`` is set.

        Raises:
            RuntimeError: if already started or closed.
        """
        if self._closed:
            raise RuntimeError("this FakeClearTax is closed; create a new one")
        if self._runner is not None:
            raise RuntimeError("this FakeClearTax is already started")
        runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise
        port = runner.addresses[0][1]
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._port = port
        self._url = f"{scheme}://{host}:{port}{_wire.API_PREFIX}"

    async def close(self) -> None:
        """Stop serving and wait until no handler of the fake is left running; idempotent.

        Requests still waiting for their latency are dropped unprocessed; ``slow`` answers
        still waiting are dropped; the connections are closed.
        """
        if self._closed:
            return
        self._closed = True
        self._wake_sleepers()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._drain()

    async def _on_shutdown(self, app: web.Application) -> None:
        self._wake_sleepers()

    def _wake_sleepers(self) -> None:
        self._closing = True
        for future in list(self._sleepers):
            _resolve(future)

    async def _drain(self) -> None:
        # A handler whose client disconnected is no longer tracked by aiohttp (it forgets the
        # task on connection loss), so the fake waits for its own handlers itself.
        current = asyncio.current_task()
        pending = {
            task
            for task in (*self._handler_tasks, *self._connection_tasks)
            if task is not current and not task.done()
        }
        if pending:
            _, still = await asyncio.wait(pending, timeout=_SHUTDOWN_TIMEOUT)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
        self._handler_tasks.clear()
        self._connection_tasks.clear()

    # ------------------------------------------------------------------ configuration

    @property
    def app(self) -> web.Application:
        """The ``aiohttp.web.Application``, for embedding in another server or test client.

        When you run it yourself instead of calling ``start()``, still ``await close()``
        afterwards: it waits for handlers whose clients have gone.
        """
        return self._app

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
    def port(self) -> int:
        """The port served on (the one picked when started with port 0)."""
        return self._port

    @property
    def token(self) -> str:
        """The valid ``x-cleartax-auth-token`` (a test value; never shown in ``repr``)."""
        return self._token

    @property
    def vat(self) -> str:
        """The default VAT: the first of ``vats``."""
        return self._vats[0]

    @property
    def vats(self) -> tuple[str, ...]:
        """The VATs the token's user is an Admin for."""
        return self._vats

    @property
    def faults(self) -> FaultPlan | None:
        """The random fault plan; assign a new plan (or ``None``) at any time.

        Changing the plan does not reset the seeded draws: the sequence continues.
        """
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        if plan is not None and not isinstance(plan, FaultPlan):
            raise TypeError(f"faults must be a FaultPlan or None, got {type(plan).__name__}")
        self._faults = plan

    def __repr__(self) -> str:
        where = self._url if self._url is not None else "not started"
        return (
            f"<FakeClearTax {where} vats={list(self._vats)} devices={len(self._devices)} "
            f"activities={len(self._activities)} requests={self._counts['total']}>"
        )

    # ------------------------------------------------------------------ devices and OTPs

    def add_device(
        self,
        device_id: str | None = None,
        *,
        vat: str | None = None,
        has_pcsid: bool = True,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        renew_error: tuple[str, str] | None = None,
    ) -> str:
        """Register an EGS device and return its id.

        Args:
            device_id: the id; ``None`` draws a UUID4 string from the seeded generator.
            vat: the VAT it belongs to (default: the first of ``vats``); using it with any
                other VAT answers 400 ``6003`` (resource not found).
            has_pcsid: whether it already holds a production CSID (renewable) or still needs
                generate-csid.
            checks: the compliance checks its activities run (default: all six); e.g. the
                three ``Simplified*`` checks for a device issuing only simplified invoices.
            failing_checks: check name to the message text (comma-separated messages
                allowed) its activities report; with any, its activities end FAILED.
            renew_error: ``(ErrorCode, ErrorMessage)``: its renewals fail with a 400
                ``ErrorList`` from ``ZATCA`` (a planted permanent failure; nothing consumed).

        Raises:
            ValueError: on a duplicate id or an invalid check configuration.
        """
        if device_id is None:
            device_id = self._new_device_id()
        else:
            _non_blank(device_id, "device_id")
            if device_id in self._devices:
                raise ValueError(f"device {device_id!r} is already registered")
        if renew_error is not None:
            code, message = renew_error
            renew_error = (_non_blank(code, "renew_error code"), str(message))
        run = _checks_of(checks)
        self._devices[device_id] = _Device(
            device_id,
            self._vat_of(vat),
            has_pcsid=has_pcsid,
            checks=run,
            failing_checks=_failing_of(failing_checks, run),
            renew_error=renew_error,
        )
        return device_id

    def add_devices(
        self,
        n: int,
        *,
        vat: str | None = None,
        has_pcsid: bool = True,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        renew_error: tuple[str, str] | None = None,
    ) -> list[str]:
        """Register ``n`` devices with generated ids (see ``add_device``); return their ids."""
        return [
            self.add_device(
                vat=vat,
                has_pcsid=has_pcsid,
                checks=checks,
                failing_checks=failing_checks,
                renew_error=renew_error,
            )
            for _ in range(n)
        ]

    def device(self, device_id: str) -> DeviceView:
        """Return a snapshot of a registered device.

        Raises:
            KeyError: if no such device is registered.
        """
        device = self._devices[device_id]
        if device.pending_activity is not None:
            self._settle(self._activities[device.pending_activity], time.monotonic())
        return DeviceView(
            device_id=device.device_id,
            vat=device.vat,
            has_pcsid=device.has_pcsid,
            renewals=device.renewals,
            generations=device.generations,
            pending_activity=device.pending_activity,
            checks=device.checks,
            failing_checks=MappingProxyType(dict(device.failing_checks)),
            renew_error=device.renew_error,
        )

    def issue_otp(self, *, vat: str | None = None, ttl: float | None = None) -> str:
        """Issue a fresh six-digit OTP for ``vat`` (default: the first VAT), valid ``ttl`` seconds.

        The OTP works once, for renew or generate, with that VAT, until ``ttl`` (default
        ``otp_ttl``) seconds of monotonic time have passed. OTPs are unique within the fake and
        never equal the sandbox sample ``"123345"``.
        """
        lifetime = self._otp_ttl if ttl is None else ttl
        if not lifetime >= 0.0:
            raise ValueError(f"ttl must be >= 0, got {ttl!r}")
        if len(self._otps) >= _MAX_OTPS:
            raise RuntimeError(f"this fake has issued {_MAX_OTPS} OTPs; use any_otp=True")
        owner = self._vat_of(vat)
        while True:
            otp = f"{self._otp_rng.randrange(1_000_000):06d}"
            if otp not in self._otps and otp != _wire.SANDBOX_OTP:
                break
        self._otps[otp] = _Otp(owner, time.monotonic() + lifetime)
        return otp

    def issue_otps(self, n: int, *, vat: str | None = None, ttl: float | None = None) -> list[str]:
        """Issue ``n`` OTPs at once (see ``issue_otp``), like the portal's batch."""
        return [self.issue_otp(vat=vat, ttl=ttl) for _ in range(n)]

    def expire_otp(self, otp: str) -> None:
        """Make an issued OTP expired now (it then answers ``Invalid-OTP`` "OTP has expired").

        Raises:
            KeyError: if the fake never issued ``otp``.
        """
        if otp not in self._otps:
            raise KeyError("no such OTP was issued by this fake")
        self._otps[otp].expires_at = float("-inf")

    def sample_credentials(self) -> SampleCredentials:
        """Pair every registered device with an unused OTP of its VAT, issuing OTPs as needed.

        Unused, unexpired OTPs are reused in issue order, so calling this twice without any
        renewal in between gives the same pairs. Meant for a CLI that prints what to use.

        Raises:
            RuntimeError: before ``start()`` (the URL is not known yet).
        """
        now = time.monotonic()
        available: dict[str, deque[str]] = {}
        for otp, record in self._otps.items():
            if not record.used and record.expires_at > now:
                available.setdefault(record.vat, deque()).append(otp)
        pairs: list[tuple[str, str]] = []
        for device in self._devices.values():
            queue = available.get(device.vat)
            otp = queue.popleft() if queue else self.issue_otp(vat=device.vat)
            pairs.append((device.device_id, otp))
        return SampleCredentials(
            url=self.url, token=self._token, vat=self.vat, devices=tuple(pairs)
        )

    def _vat_of(self, vat: str | None) -> str:
        return self._vats[0] if vat is None else _non_blank(vat, "vat")

    def _new_device_id(self) -> str:
        while True:
            device_id = str(uuid.UUID(int=self._device_rng.getrandbits(128), version=4))
            if device_id not in self._devices:
                return device_id

    # ------------------------------------------------------------------ activities

    def create_activity(
        self,
        device_id: str | None = None,
        *,
        vat: str | None = None,
        checks: Sequence[str] | None = None,
        failing_checks: Mapping[str, str] | None = None,
        polls: int | None = None,
        delay: float | None = None,
    ) -> str:
        """Create a PCSID generation activity directly (no generate-csid call); return its id.

        A direct activity never changes a device's state. ``polls``/``delay`` override the
        fake's ``activity_polls``/``activity_delay`` for this activity (each independently).

        Args:
            device_id: the device it is about; a registered device lends its VAT, checks and
                failing checks as defaults. An unregistered id is allowed and only reported.
            vat: the VAT it belongs to (default: the device's, else the first VAT).
            checks: the checks it runs (``TotalCount`` is their number; only they appear).
            failing_checks: check name to failure message; with any, it ends FAILED.
            polls: turns terminal on this status poll (>= 1).
            delay: turns terminal this many seconds after creation (0: no time trigger).
        """
        device = self._devices.get(device_id) if device_id is not None else None
        if device is not None:
            if vat is not None and vat != device.vat:
                raise ValueError(f"device {device_id!r} belongs to VAT {device.vat!r}")
            owner = device.vat
            run = device.checks if checks is None else _checks_of(checks)
            failing = device.failing_checks if failing_checks is None else failing_checks
        else:
            owner = self._vat_of(vat)
            run = _checks_of(checks)
            failing = failing_checks or {}
        if polls is not None and polls < 1:
            raise ValueError(f"polls must be >= 1, got {polls!r}")
        if delay is not None and not delay >= 0.0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        activity = self._new_activity(
            device_id=device_id,
            device=device,
            vat=owner,
            origin="direct",
            checks=run,
            failing_checks=_failing_of(failing, run),
            polls=polls,
            delay=delay,
        )
        return activity.activity_id

    def activity(self, activity_id: str) -> ActivityView:
        """Return a snapshot of an activity (time-based completion applied first).

        Raises:
            KeyError: if no such activity exists.
        """
        activity = self._activities[activity_id]
        self._settle(activity, time.monotonic())
        return ActivityView(
            activity_id=activity.activity_id,
            device_id=activity.device_id,
            vat=activity.vat,
            origin=activity.origin,
            state=activity.state,
            polls=activity.polls,
            polls_required=activity.polls_required,
            delay=activity.delay,
            checks=activity.checks,
            failing_checks=MappingProxyType(dict(activity.failing_checks)),
            created_at=activity.created_wall,
            completed_at=activity.completed_wall,
        )

    def complete_activity(self, activity_id: str) -> None:
        """Make an activity terminal now (SUCCEEDED, or FAILED if it has failing checks).

        Raises:
            KeyError: if no such activity exists.
        """
        activity = self._activities[activity_id]
        if activity.state == "IN_PROGRESS":
            self._complete(activity, datetime.now(timezone.utc))

    def _new_activity(
        self,
        *,
        device_id: str | None,
        device: _Device | None,
        vat: str,
        origin: ActivityOrigin,
        checks: tuple[str, ...],
        failing_checks: dict[str, str],
        polls: int | None = None,
        delay: float | None = None,
    ) -> _Activity:
        polls = self._activity_polls if polls is None else polls
        delay = self._activity_delay if delay is None else delay
        if polls is None and not delay:
            polls = 1
        while True:
            self._activity_counter += 1
            # Shaped like a Mongo ObjectId: 24 lowercase hex, a counter in the low bytes.
            activity_id = (
                f"{self._activity_rng.getrandbits(72):018x}{self._activity_counter & 0xFFFFFF:06x}"
            )
            if activity_id not in self._activities:
                break
        activity = _Activity(
            activity_id,
            device_id=device_id,
            device=device,
            vat=vat,
            origin=origin,
            checks=checks,
            failing_checks=failing_checks,
            polls_required=polls,
            delay=delay or None,
        )
        self._activities[activity_id] = activity
        return activity

    def _settle(self, activity: _Activity, now: float) -> None:
        if activity.state != "IN_PROGRESS":
            return
        required = activity.polls_required
        if required is not None and activity.polls >= required:
            self._complete(activity, datetime.now(timezone.utc))
        elif activity.delay is not None and now - activity.created_mono >= activity.delay:
            self._complete(activity, activity.created_wall + timedelta(seconds=activity.delay))

    def _complete(self, activity: _Activity, at: datetime) -> None:
        activity.state = "FAILED" if activity.failing_checks else "SUCCEEDED"
        activity.completed_wall = at
        device = activity.device
        if activity.origin == "generate" and device is not None:
            if device.pending_activity == activity.activity_id:
                device.pending_activity = None
            if activity.state == "SUCCEEDED":
                device.has_pcsid = True

    def _activity_body(self, activity: _Activity) -> dict[str, Any]:
        fmt = self._timestamp_format
        created = _wire.timestamp(activity.created_wall, fmt)
        completed = activity.completed_wall
        done = None if completed is None else _wire.timestamp(completed, fmt)
        return _wire.activity_body(
            state=activity.state,
            created=created,
            updated=created if done is None else done,
            completed=done,
            checks=activity.checks,
            failing_checks=activity.failing_checks,
        )

    # ------------------------------------------------------------------ faults

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
            endpoint: ``"renew"``, ``"generate"`` or ``"status"``.
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
        if retry_after is not None and fault not in _ANSWERING_FAULTS:
            raise ValueError(f"retry_after does not apply to the {fault!r} fault")
        if body is not None and fault not in (*_ANSWERING_FAULTS, "malformed"):
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

    # ------------------------------------------------------------------ observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in the order requests were read (in-flight ones too).

        Raises:
            RuntimeError: when built with ``record_requests=False``.
        """
        self._require_log()
        return list(self._log)

    def request_times(self, endpoint: str | None = None) -> list[float]:
        """The ``received_at`` of each logged request (of ``endpoint`` only, when given).

        Raises:
            ValueError: on an unknown endpoint name.
            RuntimeError: when built with ``record_requests=False``.
        """
        _check_log_endpoint(endpoint)
        self._require_log()
        return [r.received_at for r in self._log if endpoint is None or r.endpoint == endpoint]

    def count(
        self,
        endpoint: str | None = None,
        device_id: str | None = None,
        activity_id: str | None = None,
    ) -> int:
        """How many requests were received, optionally only those matching every filter given.

        ``endpoint`` alone (or no filter) is answered from counters; filtering by device or
        activity scans the request log.

        Raises:
            ValueError: on an unknown endpoint name.
            RuntimeError: filtering by device or activity with ``record_requests=False``.
        """
        _check_log_endpoint(endpoint)
        if device_id is None and activity_id is None:
            return self._counts["total" if endpoint is None else endpoint]
        self._require_log()
        return sum(
            1
            for r in self._log
            if (endpoint is None or r.endpoint == endpoint)
            and (device_id is None or r.device_id == device_id)
            and (activity_id is None or r.activity_id == activity_id)
        )

    @property
    def in_flight(self) -> int:
        """How many requests the fake is handling right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since creation or ``reset_stats()``."""
        return self._max_in_flight

    def reset_stats(self) -> None:
        """Clear the request log and counters and restart ``max_in_flight`` from ``in_flight``.

        Devices, OTPs, activities and the ledger are untouched.
        """
        self._log = []
        self._log_epoch += 1
        self._counts.clear()
        self._max_in_flight = self._in_flight

    @property
    def ledger(self) -> Mapping[str, list[ProcessedRenewal]]:
        """Device id to the renewals/generations the fake performed for it, in order.

        A read-only live view (do not mutate the lists); devices never processed are absent.
        """
        return MappingProxyType(self._ledger)

    def _require_log(self) -> None:
        if not self._record:
            raise RuntimeError("the request log is off: this fake has record_requests=False")

    # ------------------------------------------------------------------ HTTP handlers

    async def _handle_renew(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "renew")

    async def _handle_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "generate")

    async def _handle_status(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "status")

    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "other")

    async def _serve(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        connection = request.task
        if connection not in self._connection_tasks:
            self._connection_tasks.add(connection)
            connection.add_done_callback(self._connection_tasks.discard)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        exchange = _Exchange(request.method, request.path, endpoint)
        status: int | None = None
        answered: float | None = None
        try:
            response = await self._exchange(request, exchange)
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

    def _record_of(
        self, ex: _Exchange, status: int | None, answered: float | None
    ) -> RecordedRequest:
        return RecordedRequest(
            method=ex.method,
            path=ex.path,
            endpoint=ex.endpoint,
            vat=ex.vat,
            device_id=ex.device_id,
            activity_id=ex.activity_id,
            status=status,
            fault=ex.fault,
            received_at=ex.received_at,
            answered_at=answered,
            authorized=ex.authorized,
        )

    async def _exchange(self, request: web.Request, ex: _Exchange) -> web.Response | None:
        """Handle one request; ``None`` means drop the connection without answering."""
        if self._closing:
            return None
        endpoint = ex.endpoint
        raw = b""
        if endpoint in ("renew", "generate"):
            try:
                raw = await request.read()
            except ConnectionError:
                return None
        ex.received_at = time.monotonic()
        problem = self._check_headers(request, ex)
        device_id = otp = None
        if endpoint in ("renew", "generate"):
            device_id, otp, errors = _wire.parse_onboarding_body(raw)
            ex.device_id = device_id
            if problem is None and errors:
                problem = self._json(400, _wire.failed_body(errors, status_endpoint=False))
        elif endpoint == "status":
            ex.activity_id = request.match_info["activity_id"]
            known = self._activities.get(ex.activity_id)
            if known is not None:
                ex.device_id = known.device_id
        else:
            problem = self._other_response(request)
        fault = None
        if problem is None and endpoint != "other":
            fault = self._pick_fault(endpoint)
            if fault is not None:
                ex.fault = fault.name
        self._count_and_log(ex)

        if not await self._sleep(self._latency[endpoint]):
            return None
        if problem is not None:
            return problem
        if fault is not None:
            if fault.name in _ANSWERING_FAULTS:
                return self._fault_answer(fault)
            if fault.name == "drop_before":
                return None

        vat = cast(str, ex.vat)
        if endpoint == "renew":
            status, body = self._renew(vat, cast(str, device_id), cast(str, otp))
        elif endpoint == "generate":
            status, body = self._generate(vat, cast(str, device_id), cast(str, otp))
        else:
            status, body = self._status(vat, cast(str, ex.activity_id))

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

    def _count_and_log(self, ex: _Exchange) -> None:
        counts = self._counts
        counts["total"] += 1
        counts[ex.endpoint] += 1
        if self._record:
            ex.log_epoch = self._log_epoch
            ex.log_index = len(self._log)
            self._log.append(self._record_of(ex, None, None))

    async def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; return False if the fake began closing meanwhile."""
        if self._closing:
            return False
        if delay <= 0.0:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay, _resolve, future)
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
        path = request.path
        known = path in (_wire.RENEW_PATH, _wire.GENERATE_PATH) or (
            path.startswith(_wire.API_PREFIX + "/onboarding/") and path.endswith("/pcsid-status")
        )
        if known:
            allow = "GET" if path.endswith("/pcsid-status") else "POST"
            return web.Response(
                status=405,
                body=_wire.METHOD_NOT_ALLOWED_BODY,
                content_type=_wire.JSON_TYPE,
                headers={"Allow": allow},
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

    # ------------------------------------------------------------------ processing

    def _otp_problem(self, vat: str, otp: str, now: float) -> str | None:
        if self._any_otp:
            return None
        record = self._otps.get(otp)
        if record is None or record.vat != vat or record.used:
            return _wire.MSG_OTP_INVALID
        if now >= record.expires_at:
            return _wire.MSG_OTP_EXPIRED
        return None

    def _device_for(
        self, vat: str, device_id: str, *, endpoint: Literal["renew", "generate"]
    ) -> _Device | None:
        device = self._devices.get(device_id)
        if device is None and self._auto_register:
            device = _Device(
                device_id,
                vat,
                has_pcsid=endpoint == "renew",
                checks=_wire.CHECK_NAMES,
                failing_checks={},
                renew_error=None,
            )
            self._devices[device_id] = device
        if device is None or device.vat != vat:
            return None
        return device

    def _perform(
        self, device: _Device, otp: str, endpoint: Literal["renew", "generate"]
    ) -> str | None:
        """Consume the OTP, start an activity when due, write the ledger; return the activity id."""
        if not self._any_otp:
            self._otps[otp].used = True
        activity_id = None
        if endpoint == "generate" or self._renew_starts_activity:
            activity = self._new_activity(
                device_id=device.device_id,
                device=device,
                vat=device.vat,
                origin=endpoint,
                checks=device.checks,
                failing_checks=device.failing_checks,
            )
            activity_id = activity.activity_id
        entry = ProcessedRenewal(
            device_id=device.device_id,
            otp=otp,
            endpoint=endpoint,
            at=time.monotonic(),
            activity_id=activity_id,
        )
        entries = self._ledger.get(device.device_id)
        if entries is None:
            self._ledger[device.device_id] = [entry]
        else:
            entries.append(entry)
        return activity_id

    @staticmethod
    def _rejected(
        code: str, message: str, source: str = "CLEARTAX", path: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        return 400, _wire.failed_body(
            [_wire.error(code, message, source, path)], status_endpoint=False
        )

    def _renew(self, vat: str, device_id: str, otp: str) -> tuple[int, dict[str, Any]]:
        problem = self._otp_problem(vat, otp, time.monotonic())
        if problem is not None:
            return self._rejected("Invalid-OTP", problem, "ZATCA", "Otp")
        device = self._device_for(vat, device_id, endpoint="renew")
        if device is None:
            return self._rejected("6003", _wire.MSG_DEVICE_NOT_FOUND, path="DeviceId")
        if not device.has_pcsid:
            return self._rejected("6002", _wire.MSG_NO_PCSID, path="DeviceId")
        if device.renew_error is not None:
            code, message = device.renew_error
            return self._rejected(code, message, "ZATCA")
        device.renewals += 1
        activity_id = self._perform(device, otp, "renew")
        body: dict[str, Any] = {"Status": "GENERATED", "DeviceId": device_id}
        if activity_id is not None:
            body["PcsidGenerationActivityId"] = activity_id
        body["ErrorList"] = []
        return 200, body

    def _generate(self, vat: str, device_id: str, otp: str) -> tuple[int, dict[str, Any]]:
        problem = self._otp_problem(vat, otp, time.monotonic())
        if problem is not None:
            return self._rejected("Invalid-OTP", problem, "ZATCA", "Otp")
        device = self._device_for(vat, device_id, endpoint="generate")
        if device is None:
            return self._rejected("6003", _wire.MSG_DEVICE_NOT_FOUND, path="DeviceId")
        if device.pending_activity is not None:
            self._settle(self._activities[device.pending_activity], time.monotonic())
        if device.has_pcsid or device.pending_activity is not None:
            return self._rejected("6002", _wire.MSG_ALREADY_GENERATED, path="DeviceId")
        device.generations += 1
        activity_id = self._perform(device, otp, "generate")
        device.pending_activity = activity_id
        return 200, {
            "Status": "GENERATED",
            "DeviceId": device_id,
            "PcsidGenerationActivityId": activity_id,
            "ErrorList": [],
        }

    def _status(self, vat: str, activity_id: str) -> tuple[int, dict[str, Any]]:
        activity = self._activities.get(activity_id)
        if activity is None or activity.vat != vat:
            errors = [_wire.error("6003", _wire.MSG_ACTIVITY_NOT_FOUND, path="ActivityId")]
            return 400, _wire.failed_body(errors, status_endpoint=True)
        activity.polls += 1
        self._settle(activity, time.monotonic())
        # The provider's quirk: a FAILED activity comes back as HTTP 500 with a normal body.
        return (500 if activity.state == "FAILED" else 200), self._activity_body(activity)


async def run_fake_server(
    *,
    port: int = 0,
    devices: int = 5,
    ready: Callable[[FakeClearTax], object] | None = None,
    **kwargs: Any,
) -> None:
    """Run a fake with ``devices`` sample devices and one OTP each until cancelled.

    Starts ``FakeClearTax(port=port, **kwargs)``, registers ``devices`` devices (with a PCSID,
    in the default VAT) and issues one OTP per device, calls ``ready(fake)`` (awaiting its
    result if it returns an awaitable; ``fake.sample_credentials()`` tells what to print), then
    serves until the task is cancelled, closing the fake cleanly before the cancellation
    propagates.

    Example::

        task = asyncio.create_task(run_fake_server(port=8080, ready=print_credentials))
        ...
        task.cancel()
    """
    async with FakeClearTax(port=port, **kwargs) as fake:
        fake.add_devices(devices)
        fake.issue_otps(devices)
        if ready is not None:
            result = ready(fake)
            if inspect.isawaitable(result):
                await result
        await asyncio.Event().wait()
