"""Read-only records the fake server hands out: request log, ledger, views, credentials.

Every class here is a frozen attrs class built from the fake's internal state at one moment
(a snapshot): changing the fake later never changes a record already handed out. None of them
shows a secret in its ``repr``: the request log never stores the API token or an OTP at all,
and the fields that do hold one (``ProcessedRenewal.otp``, ``SampleCredentials.token``) are
left out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import attrs

#: The name the fake gives each kind of request it receives.
Endpoint = Literal["renew", "generate", "status", "register", "generate_csr", "other"]

#: The state of a PCSID generation activity, as the wire's ``Status`` spells it.
ActivityState = Literal["IN_PROGRESS", "SUCCEEDED", "FAILED"]

#: What started an activity: a generate-csid call, a renew-pcsid call (with
#: ``renew_starts_activity``), a register-device call or a test calling
#: ``FakeClearTax.create_activity``.
ActivityOrigin = Literal["generate", "renew", "register", "direct"]

#: The calls that spend an OTP and write a ledger entry.
PerformedEndpoint = Literal["renew", "generate", "register"]


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request the fake received, as kept in ``FakeClearTax.requests``.

    Holds no secret: neither the ``x-cleartax-auth-token`` header nor the OTP is stored.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: the URL path (no query string), e.g.
            ``"/middle-east/ksa/einvoicing/onboarding/renew-pcsid"``.
        endpoint: ``"renew"``, ``"generate"``, ``"status"``, ``"register"``
            (register-device), ``"generate_csr"`` (generate-csr, Generate Device ID) or
            ``"other"`` (any other path).
        vat: the ``vat`` header as sent, or ``None`` when absent or empty.
        device_id: the body's ``DeviceId`` for POSTs (when it was a string); for status
            requests the device of the polled activity when that activity exists; for
            register-device and generate-csr the ``DeviceId`` answered, if any.
        activity_id: the activity id in the path of a status request, else ``None``.
        status: the HTTP status the fake answered with; ``None`` while the request is still
            being handled, when the fake dropped the connection, or when the client had already
            gone when the answer was ready.
        fault: the name of the injected fault (see ``FAULT_NAMES``, plus ``"http"`` for
            ``FakeClearTax.inject(..., "http")``), or ``None``.
        received_at: ``time.monotonic()`` when the request (with its body) was read.
        answered_at: ``time.monotonic()`` when the answer was handed to the connection, or
            ``None`` (see ``status``).
        authorized: whether the token was valid and its user is an Admin for the VAT.

    """

    method: str
    path: str
    endpoint: Endpoint
    vat: str | None
    device_id: str | None
    activity_id: str | None
    status: int | None
    fault: str | None
    received_at: float
    answered_at: float | None
    authorized: bool


@attrs.frozen(kw_only=True)
class ProcessedRenewal:
    """One renewal or generation the fake actually performed, as kept in ``FakeClearTax.ledger``.

    An entry exists exactly when the server consumed the OTP and changed the device's
    credentials, whatever the client saw afterwards (a dropped connection, a slow or malformed
    answer). The OTP is kept because the ledger is the referee of single use, but it is left
    out of ``repr``.

    Attributes:
        device_id: the device renewed or onboarded.
        otp: the OTP the request carried.
        endpoint: ``"renew"``, ``"generate"`` or ``"register"`` (register-device: the
            entry's device is the one the call created).
        at: ``time.monotonic()`` when the server performed it.
        activity_id: the PCSID generation activity it started, if any.

    """

    device_id: str
    otp: str = attrs.field(repr=False)
    endpoint: PerformedEndpoint
    at: float
    activity_id: str | None


@attrs.frozen(kw_only=True)
class ActivityView:
    """A snapshot of one PCSID generation activity, from ``FakeClearTax.activity``.

    Attributes:
        activity_id: the ``PcsidGenerationActivityId``.
        device_id: the device it belongs to, or ``None`` for a direct activity without one.
        vat: the VAT it belongs to; polling it with another VAT answers "not found".
        origin: ``"generate"``, ``"renew"``, ``"register"`` or ``"direct"`` (made by
            ``create_activity``).
        state: ``"IN_PROGRESS"``, ``"SUCCEEDED"`` or ``"FAILED"``, as of the snapshot
            (time-based completion is applied when the snapshot is taken).
        polls: how many status requests the fake processed for it so far (requests answered
            with an injected 429/5xx or dropped before processing do not count).
        polls_required: the poll that turns it terminal, or ``None`` for time only.
        delay: seconds after creation at which it turns terminal, or ``None`` for polls only.
        checks: the compliance checks it runs (wire names, canonical order).
        failing_checks: check name to the failure message it reports.
        created_at: wall-clock UTC creation time.
        completed_at: wall-clock UTC completion time, or ``None`` while in progress.

    """

    activity_id: str
    device_id: str | None
    vat: str
    origin: ActivityOrigin
    state: ActivityState
    polls: int
    polls_required: int | None
    delay: float | None
    checks: tuple[str, ...]
    failing_checks: Mapping[str, str] = attrs.field(hash=False)
    created_at: datetime
    completed_at: datetime | None


@attrs.frozen(kw_only=True)
class DeviceView:
    """A snapshot of one registered EGS device, from ``FakeClearTax.device``.

    Attributes:
        device_id: the device id.
        vat: the VAT the device belongs to.
        has_pcsid: whether it currently holds a production CSID (renewable).
        renewals: how many renewals the fake performed for it.
        generations: how many generate-csid (or register-device) calls the fake performed
            for it.
        pending_activity: the id of its generation activity still in progress, if any.
        checks: the compliance checks its activities run.
        failing_checks: check name to the failure message its activities report.
        renew_error: the planted ``(ErrorCode, ErrorMessage)`` its renewals fail with, if any.
        egs_serial_number: its ``EgsSerialNumber`` when made by register-device or
            generate-csr, else ``None``.
        common_name: its ``CommonName`` likewise.
        invoice_type: its ``InvoiceType`` likewise (``"1100"`` when the request left it out).
        created_by: ``"add_device"``, ``"register"`` or ``"generate_csr"``.

    """

    device_id: str
    vat: str
    has_pcsid: bool
    renewals: int
    generations: int
    pending_activity: str | None
    checks: tuple[str, ...]
    failing_checks: Mapping[str, str] = attrs.field(hash=False)
    renew_error: tuple[str, str] | None
    egs_serial_number: str | None = None
    common_name: str | None = None
    invoice_type: str | None = None
    created_by: Literal["add_device", "register", "generate_csr"] = "add_device"


@attrs.frozen(kw_only=True)
class SampleCredentials:
    """What a person needs to point a client at a running fake, from ``sample_credentials()``.

    The token and the OTPs are left out of ``repr``; read the attributes to print them.

    Attributes:
        url: the base URL to give the client.
        token: the valid ``x-cleartax-auth-token``.
        vat: the default VAT (the first of the fake's VATs).
        devices: ``(device_id, otp)`` pairs, one unused OTP per registered device.
        renew_device: a device of the default VAT that holds a PCSID (for ``renew``), or
            ``None`` when there is none.
        generate_device: a device of the default VAT without a PCSID and with no generation
            in progress (for ``generate_csid``), or ``None`` when there is none.
        sandbox_otp: ``"123345"`` when the fake accepts the sandbox sample OTP
            (``sandbox_otp=True``: once per device), else ``None``.

    """

    url: str
    token: str = attrs.field(repr=False)
    vat: str
    devices: tuple[tuple[str, str], ...] = attrs.field(repr=False)
    renew_device: str | None = None
    generate_device: str | None = None
    sandbox_otp: str | None = attrs.field(default=None, repr=False)
