"""The rest of onboarding: ``register_device`` and ``generate_device_id``.

Their inputs (:class:`DeviceDetails`, :class:`OrganizationDetails`) are checked here against
the provider's documented rules before anything is sent; their answers are decoded here too,
purely, like ``_decode``'s. Wire names follow ``_serde.wire_name``.

Retries: register-device carries an OTP, so it follows renew's rule (re-sent only when it
provably never reached the server, or on 429). generate-csr is idempotent per VAT and EGS
serial number (a repeat answers with the same device id), so it is retried like a GET.
The two calls take the client as ``self``: ``_client`` binds them as ``PcsidClient`` methods.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from ._decode import _decode_success, _scrub_detail, stamp
from ._errors import InvalidArgumentError
from ._models import DeviceIdResult, DeviceRegistrationResult, FrozenMap
from ._serde import _structure, wire_name
from ._validate import check_token_like, per_call

if TYPE_CHECKING:
    from ._client import PcsidClient

__all__ = [
    "GENERATE_CSR_PATH",
    "REGISTER_PATH",
    "DeviceDetails",
    "OrganizationDetails",
    "decode_device_id",
    "decode_registration",
    "generate_device_id",
    "register_device",
]

REGISTER_PATH: Final = "/onboarding/register-device"
GENERATE_CSR_PATH: Final = "/onboarding/generate-csr"
# The provider's documented patterns (ASCII only: [a-zA-Z0-9] is ASCII in Python's re).
_EGS_SERIAL: Final = re.compile(r"1-[a-zA-Z0-9]+\|2-[a-zA-Z0-9]+\|3-[a-zA-Z0-9]+")
_INVOICE_TYPE: Final = re.compile(r"(?!0{4})[01]{2}00")
_VAT: Final = re.compile(r"[0-9]{15}")


def _text(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{attribute.name} must be a non-blank string")
    if any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InvalidArgumentError(f"{attribute.name} must not contain control characters")


def _pattern(regex: re.Pattern[str], rule: str) -> Any:
    def check(_: object, attribute: attrs.Attribute[str], value: object) -> None:
        if not isinstance(value, str) or regex.fullmatch(value) is None:
            raise InvalidArgumentError(f"{attribute.name} must be {rule}")

    return check


@attrs.frozen
class DeviceDetails:
    """The EGS unit to onboard (``DeviceDetails``), checked against the provider's rules.

    Attributes:
        common_name: the unit's name or asset tracking number (non-blank).
        egs_serial_number: ``1-<manufacturer>|2-<model>|3-<serial>``, each part ASCII
            letters and digits.
        location: the branch address where the unit mostly sits (non-blank).
        industry: the industry (non-blank).
        invoice_type: ``TSXY`` as 0/1 digits with ``XY`` ``00``, not ``0000``: ``1100``
            (default: standard and simplified), ``1000`` standard only, ``0100`` simplified.

    Raises:
        InvalidArgumentError: a field breaks its rule (nothing is sent).

    """

    common_name: str = attrs.field(validator=_text)
    egs_serial_number: str = attrs.field(
        validator=_pattern(_EGS_SERIAL, "1-<manufacturer>|2-<model>|3-<serial> (letters, digits)")
    )
    location: str = attrs.field(validator=_text)
    industry: str = attrs.field(validator=_text)
    invoice_type: str = attrs.field(
        default="1100", validator=_pattern(_INVOICE_TYPE, "four 0/1 digits ending 00, not 0000")
    )

    def to_wire(self) -> dict[str, str]:
        """The ``DeviceDetails`` object as sent."""
        return {wire_name(a.name): getattr(self, a.name) for a in attrs.fields(DeviceDetails)}


@attrs.frozen
class OrganizationDetails:
    """The taxpayer the unit belongs to (``OrganizationDetails``).

    The provider documents ``Vat``; its other fields were not readable in the docs we had,
    so ``extra`` passes more fields through as given (wire names, JSON strings).

    Attributes:
        vat: the organization's 15-digit VAT number (ClearTax rejects one that differs
            from the call's ``vat`` header).
        extra: more ``OrganizationDetails`` fields, by wire name.

    Raises:
        InvalidArgumentError: the VAT is not 15 digits, or ``extra`` is not text to text.

    """

    vat: str = attrs.field(validator=_pattern(_VAT, "the 15-digit VAT number"))
    extra: Mapping[str, str] = attrs.field(factory=FrozenMap, converter=FrozenMap)

    @extra.validator
    def _check_extra(self, _: attrs.Attribute[Mapping[str, str]], value: Mapping[str, str]) -> None:
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                raise InvalidArgumentError("OrganizationDetails.extra must map str to str")
            if key == "Vat":
                raise InvalidArgumentError("OrganizationDetails.extra must not repeat Vat")

    def to_wire(self) -> dict[str, str]:
        """The ``OrganizationDetails`` object as sent."""
        return {wire_name("vat"): self.vat, **self.extra}


def _device_body(device: object, organization: object, otp: str | None) -> bytes:
    if not isinstance(device, DeviceDetails):
        raise InvalidArgumentError("device_details must be a DeviceDetails")
    if not isinstance(organization, OrganizationDetails):
        raise InvalidArgumentError("organization_details must be an OrganizationDetails")
    document: dict[str, object] = {
        wire_name("device_details"): device.to_wire(),
        wire_name("organization_details"): organization.to_wire(),
    }
    if otp is not None:
        document[wire_name("otp")] = otp
    return json.dumps(document).encode()


_Answer = TypeVar("_Answer", DeviceRegistrationResult, DeviceIdResult)


def _decode_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    cls: type[_Answer],
    path: str,
    secrets: tuple[str, ...],
) -> _Answer:
    """The answer as ``cls``, its error details scrubbed of the call's secrets."""
    result = _decode_success(
        status,
        headers,
        body,
        partial(_structure, cls=cls),
        method="POST",
        path=path,
        secrets=secrets,
    )
    if result.errors and secrets:
        result = attrs.evolve(
            result, errors=tuple(_scrub_detail(e, secrets) for e in result.errors)
        )
    return result


def decode_registration(
    status: int, headers: Mapping[str, str], body: bytes, *, secrets: tuple[str, ...] = ()
) -> DeviceRegistrationResult:
    """Decode a register-device answer (its error details scrubbed of the call's secrets)."""
    result = _decode_answer(status, headers, body, DeviceRegistrationResult, REGISTER_PATH, secrets)
    return stamp(result, status, headers)


def decode_device_id(
    status: int, headers: Mapping[str, str], body: bytes, *, secrets: tuple[str, ...] = ()
) -> DeviceIdResult:
    """Decode a generate-csr answer: with a device id, its error entries are warnings."""
    result = _decode_answer(status, headers, body, DeviceIdResult, GENERATE_CSR_PATH, secrets)
    if result.device_id is not None and result.errors:
        result = attrs.evolve(result, errors=(), warnings=result.errors)
    return stamp(result, status, headers)


async def register_device(  # noqa: D417 (self: the client; bound in _client)
    self: PcsidClient,
    device_details: DeviceDetails,
    organization_details: OrganizationDetails,
    otp: str,
    *,
    vat: str | None = None,
    timeout: float | None = None,
) -> DeviceRegistrationResult:
    """Onboard a new EGS unit in one call: its device id, CSID and PCSID activity.

    The OTP works once, so this POST is retried only when it provably never reached the
    server, or on 429 (like :meth:`renew`). Follow ``activity_id`` with
    :meth:`await_activity`.

    Args:
        device_details: the unit (:class:`DeviceDetails`).
        organization_details: its taxpayer (:class:`OrganizationDetails`).
        otp: the one-time password from the Fatoora portal (one hour, single use).
        vat: the VAT header for this call, if not the client's default.
        timeout: seconds per attempt for this call; ``None``: the client's timeout.

    Returns:
        The :class:`DeviceRegistrationResult`.

    Raises:
        BadRequestError: validation failed (a serial already registered: 6002; a spent
            or foreign OTP: Invalid-OTP; a VAT that differs from the header: 6002).

    """
    code = check_token_like(otp, "otp")
    body = _device_body(device_details, organization_details, code)
    secrets = (self._token, code)
    return await self._transport.call(
        "POST",
        REGISTER_PATH,
        headers=self._headers(vat, post=True),
        body=body,
        decode=partial(decode_registration, secrets=secrets),
        safe=False,
        timeout=per_call(timeout),
    )


async def generate_device_id(  # noqa: D417 (self: the client; bound in _client)
    self: PcsidClient,
    device_details: DeviceDetails,
    organization_details: OrganizationDetails,
    *,
    vat: str | None = None,
    timeout: float | None = None,
) -> DeviceIdResult:
    """Get the device id of an EGS unit (Generate Device ID), creating it if new.

    One device per VAT and ``EgsSerialNumber``: asking again returns the existing id,
    with ``already_existed`` set and the provider's 6002 entry in ``warnings``. That
    makes the call idempotent, so it is retried like a GET.

    Args:
        device_details: the unit (:class:`DeviceDetails`).
        organization_details: its taxpayer (:class:`OrganizationDetails`).
        vat: the VAT header for this call, if not the client's default.
        timeout: seconds per attempt for this call; ``None``: the client's timeout.

    Returns:
        The :class:`DeviceIdResult`.

    """
    body = _device_body(device_details, organization_details, None)
    return await self._transport.call(
        "POST",
        GENERATE_CSR_PATH,
        headers=self._headers(vat, post=True),
        body=body,
        decode=partial(decode_device_id, secrets=self._secrets),
        safe=True,
        timeout=per_call(timeout),
    )
