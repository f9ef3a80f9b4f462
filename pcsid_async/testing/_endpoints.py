"""What each endpoint does once a request passed the checks, and the table of endpoints.

``ROUTES`` is the one list of the fake's endpoints: the HTTP layer (``_routes``) registers a
handler for each row and calls its ``process`` with the request's VAT and fields. To add an
endpoint: its path in ``_wire``, a ``_process_*`` method here returning ``(status, body)``
(checks first, then ``_perform`` with no ``await`` in between), a ``Route`` row, and its name
in ``_records.Endpoint`` and ``_state.ENDPOINTS`` (plus a ``FaultPlan`` field for faults).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs

from pcsid_async.testing import _wire
from pcsid_async.testing._faults import FaultEndpoint
from pcsid_async.testing._registry import _Registry
from pcsid_async.testing._state import _Device

Answer = tuple[int, dict[str, Any]]


@attrs.frozen
class Call:
    """The fields of one request the endpoints act on (the body's, or the path's)."""

    device_id: str | None = None
    otp: str | None = attrs.field(default=None, repr=False)
    activity_id: str | None = None
    #: register-device / generate-csr: the checked body fields (see ``parse_device_body``).
    details: Mapping[str, str] = attrs.field(factory=dict)


class _Endpoints(_Registry):
    """The processing of renew-pcsid, generate-csid, pcsid-status, register-device, generate-csr."""

    @staticmethod
    def _rejected(
        code: str, message: str, source: str = "CLEARTAX", path: str | None = None
    ) -> Answer:
        return 400, _wire.failed_body(
            [_wire.error(code, message, source, path)], status_endpoint=False
        )

    def _onboarding_device(
        self, vat: str, call: Call, endpoint: Literal["renew", "generate"]
    ) -> _Device | Answer:
        """The device an OTP-carrying call is for, or the refusal of its OTP or device id."""
        device_id, otp = str(call.device_id), str(call.otp)
        problem = self._otp_problem(vat, otp, device_id, time.monotonic())
        if problem is not None:
            return self._rejected("Invalid-OTP", problem, "ZATCA", "Otp")
        device = self._device_for(vat, device_id, endpoint=endpoint)
        if device is None:
            return self._rejected("6003", _wire.MSG_DEVICE_NOT_FOUND, path="DeviceId")
        return device

    def _process_renew(self, vat: str, call: Call) -> Answer:
        device = self._onboarding_device(vat, call, "renew")
        if not isinstance(device, _Device):
            return device
        device_id, otp = device.device_id, str(call.otp)
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

    def _process_generate(self, vat: str, call: Call) -> Answer:
        device = self._onboarding_device(vat, call, "generate")
        if not isinstance(device, _Device):
            return device
        device_id, otp = device.device_id, str(call.otp)
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

    def _process_status(self, vat: str, call: Call) -> Answer:
        activity = self._activities.get(str(call.activity_id))
        if activity is None or activity.vat != vat:
            errors = [_wire.error("6003", _wire.MSG_ACTIVITY_NOT_FOUND, path="ActivityId")]
            return 400, _wire.failed_body(errors, status_endpoint=True)
        activity.polls += 1
        self._settle(activity, time.monotonic())
        # The provider's quirk: a FAILED activity comes back as HTTP 500 with a normal body.
        return (500 if activity.state == "FAILED" else 200), self._activity_body(activity)

    def _vat_mismatch(self, vat: str, call: Call) -> Answer | None:
        if call.details["org_vat"] == vat:
            return None
        return self._rejected("6002", _wire.MSG_VAT_MISMATCH, path="OrganizationDetails.Vat")

    def _process_register(self, vat: str, call: Call) -> Answer:
        refusal = self._vat_mismatch(vat, call)
        if refusal is not None:
            return refusal
        serial, otp = call.details["egs_serial_number"], str(call.otp)
        # The sandbox sample OTP is spent per device; a new device has not spent it yet.
        problem = self._otp_problem(vat, otp, "", time.monotonic())
        if problem is not None:
            return self._rejected("Invalid-OTP", problem, "ZATCA", "Otp")
        if (vat, serial) in self._serials:
            path = "DeviceDetails.EgsSerialNumber"
            return self._rejected("6002", _wire.MSG_ALREADY_REGISTERED, path=path)
        device = self._onboard_device(vat, call.details, "register")
        device.generations += 1
        activity_id = self._perform(device, otp, "register")
        device.pending_activity = activity_id
        return 200, {
            "Status": "GENERATED",
            "DeviceId": device.device_id,
            "PcsidGenerationActivityId": activity_id,
            "ErrorList": [],
        }

    def _process_generate_csr(self, vat: str, call: Call) -> Answer:
        refusal = self._vat_mismatch(vat, call)
        if refusal is not None:
            return refusal
        existing = self._serials.get((vat, call.details["egs_serial_number"]))
        if existing is not None:
            # One device per VAT and serial: the repeat names it, with a warning-like error.
            warning = _wire.error(
                "6002", _wire.MSG_DEVICE_EXISTS, path="DeviceDetails.EgsSerialNumber"
            )
            return 200, {"Status": "GENERATED", "DeviceId": existing, "ErrorList": [warning]}
        device = self._onboard_device(vat, call.details, "generate_csr")
        return 200, {"Status": "GENERATED", "DeviceId": device.device_id, "ErrorList": []}


#: What a route's request carries: ``DeviceId`` + ``Otp``; device details (+ ``Otp``); none.
BodyKind = Literal["onboarding", "device_otp", "device", "none"]


@attrs.frozen
class Route:
    """One endpoint of the fake: how it is reached and what processes it.

    Attributes:
        endpoint: its name in the request log, counters, latency, faults and injections.
        method: the one HTTP method it answers (others get 405).
        path: the aiohttp path pattern, under ``API_PREFIX``; ``{activity_id}`` is read.
        process: the ``_Endpoints`` method that performs it.
        body: what its JSON body carries (``"none"``: no body is read).
    """

    endpoint: FaultEndpoint
    method: str
    path: str
    process: Callable[[_Endpoints, str, Call], Answer]
    body: BodyKind


ROUTES: Final[tuple[Route, ...]] = (
    Route("renew", "POST", _wire.RENEW_PATH, _Endpoints._process_renew, "onboarding"),
    Route("generate", "POST", _wire.GENERATE_PATH, _Endpoints._process_generate, "onboarding"),
    Route("status", "GET", _wire.STATUS_PATH, _Endpoints._process_status, "none"),
    Route("register", "POST", _wire.REGISTER_PATH, _Endpoints._process_register, "device_otp"),
    Route(
        "generate_csr",
        "POST",
        _wire.GENERATE_CSR_PATH,
        _Endpoints._process_generate_csr,
        "device",
    ),
)
