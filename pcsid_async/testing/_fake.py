"""``FakeClearTax``: an in-process fake of ClearTax's KSA onboarding API, and its runner.

The fake speaks only the JSON wire format of the contract (``cleartax-pcsid.md``) and imports
nothing from the rest of ``pcsid_async``, so it stays an independent referee of the client.
This module holds the public class (configuration, lifecycle, properties); each concern it
is built from lives in its own module (see the package docstring).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from aiohttp import web

from pcsid_async.testing import _wire
from pcsid_async.testing._faults import FaultPlan
from pcsid_async.testing._routes import _Http
from pcsid_async.testing._state import ENDPOINTS, _non_blank

# Handlers are woken when the fake closes, so this only bounds a handler stuck elsewhere
# (say, a client that sent headers but never its body) instead of aiohttp's 60 s default.
_SHUTDOWN_TIMEOUT: Final = 1.0


def _latency_of(latency: float | Mapping[str, float]) -> dict[str, float]:
    values: dict[str, float]
    if isinstance(latency, Mapping):
        unknown = set(latency).difference(ENDPOINTS)
        if unknown:
            raise ValueError(f"latency keys must be among {ENDPOINTS}, got {sorted(unknown)}")
        values = {e: float(latency.get(e, 0.0)) for e in ENDPOINTS}
    else:
        values = dict.fromkeys(ENDPOINTS, float(latency))
    if not all(v >= 0.0 for v in values.values()):
        raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
    values["other"] = 0.0
    return values


class FakeClearTax(_Http):
    """A fake ClearTax KSA onboarding server on loopback, for tests, demos and benchmarks.

    Serves ``renew-pcsid``, ``generate-csid``, ``pcsid-status``, ``register-device`` and
    ``generate-csr`` (Generate Device ID) under the real API's path prefix, with the
    contract's status codes and body shapes, an in-memory device registry, single-use OTPs,
    PCSID generation activities, a request log, a ledger of performed renewals and seeded
    fault injection. Not thread-safe: use it from one event loop.

    How a request is handled, in order:

    1. The body of a POST is read.
    2. Headers: a missing, empty or wrong ``x-cleartax-auth-token`` answers 401 (bare error
       object, ``ErrorCode 100401``); a missing or blank ``vat`` answers 400 (``ErrorList``
       with ``Path: "vat"``); a VAT the user is not an Admin for answers 403 (bare error
       object, ``ErrorCode 5002``).
    3. Body shape (POSTs): not a JSON object, or a missing/blank ``DeviceId`` or ``Otp``
       answers 400 with one ``ErrorList`` entry per problem (``Path`` names the field).
       register-device and generate-csr check ``DeviceDetails`` (``CommonName``,
       ``Location``, ``Industry`` non-empty; ``EgsSerialNumber`` ``1-x|2-y|3-z``;
       ``InvoiceType`` optional, ``TSXY`` as the docs give it, default ``1100``),
       ``OrganizationDetails.Vat`` (15 digits) and, for register-device, ``Otp``; each
       problem gets ``ErrorCode 6002`` with a dotted ``Path`` such as
       ``DeviceDetails.EgsSerialNumber``.
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
       PCSID and no generation in progress, else 400 ``6002``). register-device and
       generate-csr first need ``OrganizationDetails.Vat`` equal to the ``vat`` header (else
       400 ``6002``); register-device then checks the OTP like renew, and a VAT and serial
       number that already has a device answers 400 ``6002``; it creates the device, spends
       the OTP, writes a ledger entry (``"register"``) and starts its activity.
       generate-csr makes a device without PCSID (no OTP, no ledger entry), or for a VAT and
       serial that has one answers 200 with that ``DeviceId`` and a warning-like
       ``ErrorList`` entry (``6002``). Only a request that passes
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
            ``"renew"``/``"generate"``/``"status"``/``"register"``/``"generate_csr"`` to
            seconds (missing endpoints: 0).
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
        sandbox_otp: in the sandbox's spirit, also accept its documented sample OTP
            ``"123345"``, for any device of an Admin VAT, once per device (a second performed
            renew or generate of that device with it answers ``Invalid-OTP``). With
            ``add_quickstart_devices()`` the README quickstart runs against the fake.
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
        sandbox_otp: bool = False,
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
        self._latency = _latency_of(latency)
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

        self._sandbox_otp = sandbox_otp
        self._init_state(seed)
        self._app = self._build_app()

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
    def port(self) -> int:
        """The port served on (the one picked when started with port 0)."""
        return self._port

    @property
    def token(self) -> str:
        """The valid ``x-cleartax-auth-token`` (a test value; never shown in ``repr``)."""
        return self._token

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


async def run_fake_server(
    *,
    port: int = 0,
    devices: int = 5,
    devices_without_pcsid: int = 0,
    ready: Callable[[FakeClearTax], object] | None = None,
    **kwargs: Any,
) -> None:
    """Run a fake with ``devices`` sample devices and one OTP each until cancelled.

    Starts ``FakeClearTax(port=port, **kwargs)``, registers ``devices`` devices (with a PCSID,
    in the default VAT) and ``devices_without_pcsid`` more without one (for generate-csid),
    issues one OTP per device, also registers the README quickstart's two devices when
    ``sandbox_otp=True`` is given, calls ``ready(fake)`` (awaiting its
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
        fake.add_devices(devices_without_pcsid, has_pcsid=False)
        fake.issue_otps(devices + devices_without_pcsid)
        if kwargs.get("sandbox_otp"):
            fake.add_quickstart_devices()
        if ready is not None:
            result = ready(fake)
            if inspect.isawaitable(result):
                await result
        await asyncio.Event().wait()
