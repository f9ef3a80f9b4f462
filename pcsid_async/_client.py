"""``PcsidClient``: its constructor, lifecycle, request headers and the endpoint calls.

Composed, not stacked: ``renew``, ``generate_csid`` and ``get_status`` are written here;
the other methods are functions of their concern's module, bound here as methods (each
takes the client as ``self`` and keeps its signature and docstring): onboarding
(``_onboarding``), polling (``_polling``), batches (``_batch``) and per-call options
(``_options``). Those modules import this one only for type checking. The constructor's
checks are ``_settings``'; every request goes through the client's ``_transport.Transport``.
"""

from __future__ import annotations

import json
import ssl as ssl_module
from collections.abc import Iterable
from functools import partial
from types import TracebackType
from typing import Final

import aiohttp
from yarl import URL

from . import _batch, _onboarding, _options, _polling
from ._bounded import DEFAULT_MAX_RESPONSE_BYTES
from ._config import RetryPolicy
from ._decode import activity_decoder, decode_csid, renewal_decoder
from ._hooks import RequestHook, ResponseHook
from ._models import ActivityStatus, CsidGenerationResult, RenewalResult
from ._serde import wire_name
from ._settings import client_settings
from ._transport import CallStats
from ._validate import check_activity_id, check_positive, check_token_like, per_call

# The OTP bodies' keys, and json.dumps' own encoder without its per-call dispatch.
_DEVICE_ID: Final = wire_name("device_id")
_OTP: Final = wire_name("otp")
_encode_json: Final = json.JSONEncoder().encode

__all__ = [
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "PcsidClient",
    "check_activity_id",
    "check_positive",
    "check_token_like",
]

SANDBOX_URL: Final = "https://api-sandbox.cleartax.com/middle-east/ksa/einvoicing"
PRODUCTION_URL: Final = "https://api.cleartax.com/middle-east/ksa/einvoicing"

RENEW_PATH: Final = "/onboarding/renew-pcsid"
GENERATE_PATH: Final = "/onboarding/generate-csid"
_MAX_CACHED_VATS: Final = 1024


class PcsidClient:
    """An asyncio client for ClearTax's KSA PCSID onboarding APIs.

    Use it as an async context manager (or call :meth:`close`)::

        async with PcsidClient(token, vat) as client:
            result = await client.renew(device_id, otp)

    Calls: :meth:`renew`, :meth:`generate_csid`, :meth:`get_status`; waiting:
    :meth:`await_activity`, :meth:`watch`; many devices at once: :meth:`renew_many`.
    """

    def __init__(
        self,
        auth_token: str,
        vat: str,
        *,
        base_url: str | URL = SANDBOX_URL,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 100,
        rate_limit: float | None = None,
        user_agent: str | None = None,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | URL | None = None,
        trust_env: bool = False,
        on_request: RequestHook | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        """Create a client. No I/O happens here; the session is created on first use.

        Args:
            auth_token: the ClearTax API token (a secret: never shown in reprs or errors).
            vat: the default VAT (or group VAT) number; override per call with ``vat=``.
            base_url: :data:`SANDBOX_URL` (default), :data:`PRODUCTION_URL`, or a test
                server. Must be https; plain http only for loopback hosts.
            timeout: seconds for one attempt of one request (connect, send, answer);
                ``None`` for no limit. It never expires early, and at most 1/32 of its
                length (50 ms at most) late: attempts ending close together share a timer.
            retry: the :class:`RetryPolicy`; the default retries safe calls only.
            session: an ``aiohttp.ClientSession`` to borrow. It stays the caller's: the
                client never closes it. Without one, the client creates its own inside
                the running loop and closes it in :meth:`close`.
            max_connections: the most requests in flight at once through this client.
            rate_limit: optional requests per second shared by every call of this client.
            user_agent: the User-Agent header; defaults to ``pcsid-async/<version> ...``.
            trace_configs: extra ``aiohttp.TraceConfig`` for the client's own session.
            ssl: an ``ssl.SSLContext`` (e.g. a private CA), ``True`` to verify with the
                system's CAs, or ``False`` (loopback ``base_url`` only) to skip checks.
            max_response_bytes: the cap on any answer's body after decompression (default
                1 MiB: ClearTax's answers are a few KB); over it, reading stops and the call
                raises :class:`ResponseTooLargeError`.
            proxy: an http(s):// forward proxy for the client's own session; credentials
                in it (``http://user:pass@host:port``) go to the proxy only, never shown.
            trust_env: read ``HTTP(S)_PROXY``/``NO_PROXY`` (and ``.netrc``) from the
                environment. Off by default: a service's proxy variables must not silently
                route the auth token through a proxy nobody chose for this client.
            on_request: a plain callable given a :class:`RequestEvent` before each attempt.
            on_response: a plain callable given a :class:`ResponseEvent` after each attempt
                (an answer or a failure). Events carry no secret; a hook that raises is
                logged and ignored.

        Raises:
            ValueError: (an :class:`InvalidArgumentError`) for a bad argument.

        """
        # Every argument, by name, to the one place that checks them (only they are local).
        given = {name: value for name, value in locals().items() if name != "self"}
        settings = client_settings(**given)
        self._token, self._vat = settings.token, settings.vat
        self._base_url, self._user_agent = settings.base_url, settings.user_agent
        self._timeout, self._retry = settings.timeout, settings.retry
        self._rate_limit, self._max_connections = settings.rate_limit, settings.max_connections
        self._transport = settings.transport()
        self._header_cache: dict[tuple[str, bool], dict[str, str]] = {}
        self._default_headers: tuple[dict[str, str], dict[str, str]] | None = None
        self._default_headers = (self._headers(None, post=False), self._headers(None, post=True))
        self._transport.set_default_headers(*self._default_headers)
        self._secrets = (self._token,)

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> PcsidClient:
        await self._transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session (a borrowed one stays open). Idempotent.

        A closed client refuses further calls with :class:`ClientClosedError`.
        """
        await self._transport.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._transport.closed

    @property
    def base_url(self) -> str:
        """The base URL requests go to."""
        return str(self._base_url)

    @property
    def vat(self) -> str:
        """The default VAT number."""
        return self._vat

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._retry

    @property
    def max_connections(self) -> int:
        """The most requests in flight at once through this client."""
        return self._max_connections

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} base_url={self.base_url!r} vat={self._vat!r} {state}>"

    # --- helpers -------------------------------------------------------------------------------

    def _headers(self, vat: str | None, *, post: bool) -> dict[str, str]:
        if vat is None:
            vat = self._vat
            defaults = self._default_headers
            if defaults is not None:
                return defaults[post]
        else:
            vat = check_token_like(vat, "vat")
        key = (vat, post)
        headers = self._header_cache.get(key)
        if headers is None:
            headers = {
                "x-cleartax-auth-token": self._token,
                "vat": vat,
                "Accept": "application/json",
                "User-Agent": self._user_agent,
            }
            if post:
                headers["Content-Type"] = "application/json"
            if len(self._header_cache) >= _MAX_CACHED_VATS:
                self._header_cache.clear()
            self._header_cache[key] = headers
        return headers

    def _otp_body(self, device_id: object, otp: object) -> tuple[bytes, str]:
        device = check_token_like(device_id, "device_id")
        code = check_token_like(otp, "otp")
        body = _encode_json({_DEVICE_ID: device, _OTP: code})
        return body.encode(), code

    # --- the calls -----------------------------------------------------------------------------

    async def renew(
        self,
        device_id: str,
        otp: str,
        *,
        vat: str | None = None,
        timeout: float | None = None,
        _stats: CallStats | None = None,
    ) -> RenewalResult:
        """Renew a device's PCSID with a one-time password from ZATCA's Fatoora portal.

        The OTP works once, so this POST is retried only when it provably never reached the
        server, or on 429 (see :class:`RetryPolicy`).

        Args:
            device_id: the EGS unit's device id (it must already have a PCSID).
            otp: the one-time password (valid one hour, single use).
            vat: the VAT number for this call, if not the client's default.
            timeout: seconds per attempt for this call; ``None``: the client's timeout.

        Returns:
            The :class:`RenewalResult`; ``status`` is GENERATED on success.

        Raises:
            BadRequestError: validation failed (unknown device, no PCSID, spent OTP, ...).
            APIConnectionError: no answer; check ``may_have_reached_server`` before reusing
                the OTP.

        """
        body, otp_value = self._otp_body(device_id, otp)
        headers = self._headers(vat, post=True)
        secrets = (self._token, otp_value)
        return await self._transport.call(
            "POST",
            RENEW_PATH,
            headers=headers,
            body=body,
            decode=renewal_decoder(secrets),
            safe=False,
            stats=_stats,
            timeout=per_call(timeout),
        )

    async def generate_csid(
        self, device_id: str, otp: str, *, vat: str | None = None, timeout: float | None = None
    ) -> CsidGenerationResult:
        """Generate a device's CSID and start the activity that generates its PCSID.

        Not idempotent: a second call for the same device fails with 400 (ErrorCode 6002).
        Follow the returned ``activity_id`` with :meth:`await_activity`.

        Args:
            device_id: the EGS unit's device id.
            otp: the one-time password (valid one hour, single use).
            vat: the VAT number for this call, if not the client's default.
            timeout: seconds per attempt for this call; ``None``: the client's timeout.

        Returns:
            The :class:`CsidGenerationResult`, carrying ``activity_id``.

        """
        body, otp_value = self._otp_body(device_id, otp)
        headers = self._headers(vat, post=True)
        secrets = (self._token, otp_value)
        return await self._transport.call(
            "POST",
            GENERATE_PATH,
            headers=headers,
            body=body,
            decode=partial(decode_csid, method="POST", path=GENERATE_PATH, secrets=secrets),
            safe=False,
            timeout=per_call(timeout),
        )

    async def get_status(
        self, activity_id: str, *, vat: str | None = None, timeout: float | None = None
    ) -> ActivityStatus:
        """Read a PCSID generation activity's status once.

        A FAILED activity is an answer, not an error: the provider sends it as HTTP 500 with
        an activity body, and this returns it with ``state == FAILED``.

        Args:
            activity_id: ``PcsidGenerationActivityId`` from :meth:`generate_csid`.
            vat: the VAT number for this call, if not the client's default.
            timeout: seconds per attempt for this call; ``None``: the client's timeout.

        Returns:
            The :class:`ActivityStatus`.

        """
        segment = check_activity_id(activity_id)
        path = f"/onboarding/{segment}/pcsid-status"
        return await self._transport.call(
            "GET",
            path,
            headers=self._headers(vat, post=False),
            body=None,
            decode=activity_decoder(str(activity_id), path, self._secrets),
            safe=True,
            timeout=per_call(timeout),
        )

    # --- composed: each concern's functions, bound as methods -----------------------------------

    with_options = _options.with_options
    register_device = _onboarding.register_device
    generate_device_id = _onboarding.generate_device_id
    watch = _polling.watch
    await_activity = _polling.await_activity
    renew_many = _batch.renew_many


PcsidClient.__module__ = "pcsid_async"
