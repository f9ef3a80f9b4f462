"""JSON wire shapes the fake emits: error bodies, activity bodies, timestamps, fault bodies.

Pure functions and constants, no state. Every builder returns a fresh ``dict`` so a caller may
mutate it (the ``extra_fields`` fault does) without touching shared data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

#: Where the real API mounts its routes; the fake mounts them at the same path.
API_PREFIX: Final = "/middle-east/ksa/einvoicing"
RENEW_PATH: Final = API_PREFIX + "/onboarding/renew-pcsid"
GENERATE_PATH: Final = API_PREFIX + "/onboarding/generate-csid"
STATUS_PATH: Final = API_PREFIX + "/onboarding/{activity_id}/pcsid-status"
REGISTER_PATH: Final = API_PREFIX + "/onboarding/register-device"
GENERATE_CSR_PATH: Final = API_PREFIX + "/onboarding/generate-csr"

#: The six ZATCA compliance checks, as their wire names, in canonical order.
CHECK_NAMES: Final[tuple[str, ...]] = (
    "StandardTaxInvoice",
    "StandardTaxInvoiceCredit",
    "StandardTaxInvoiceDebit",
    "SimplifiedTaxInvoice",
    "SimplifiedTaxInvoiceCredit",
    "SimplifiedTaxInvoiceDebit",
)

#: The sandbox's documented sample OTP.
SANDBOX_OTP: Final = "123345"

TimestampFormat = Literal["iso", "epoch_s", "epoch_ms"]
TIMESTAMP_FORMATS: Final[tuple[str, ...]] = ("iso", "epoch_s", "epoch_ms")

JSON_TYPE: Final = "application/json"
HTML_TYPE: Final = "text/html"

MSG_DEVICE_NOT_FOUND: Final = "Device not found"
MSG_NO_PCSID: Final = "Device has no PCSID to renew; generate one first"
MSG_ALREADY_GENERATED: Final = "Production CSID already generated for device"
MSG_OTP_INVALID: Final = "OTP is invalid or already used"
MSG_OTP_EXPIRED: Final = "OTP has expired"
MSG_ACTIVITY_NOT_FOUND: Final = "Activity not found"
MSG_VAT_MISMATCH: Final = "OrganizationDetails.Vat does not match the vat header"
MSG_ALREADY_REGISTERED: Final = "Device already registered for the given EgsSerialNumber"
MSG_DEVICE_EXISTS: Final = "Device already exists for the given EgsSerialNumber"

#: The provider's pattern for ``EgsSerialNumber``: manufacturer, model and serial number.
EGS_SERIAL_PATTERN: Final = re.compile(r"1-[a-zA-Z0-9]+\|2-[a-zA-Z0-9]+\|3-[a-zA-Z0-9]+")
#: ``InvoiceType`` ``TSXY``: T standard, S simplified (not both 0), X and Y reserved as 0.
INVOICE_TYPE_PATTERN: Final = re.compile(r"(?!0{4})[01]{2}00")
VAT_PATTERN: Final = re.compile(r"[0-9]{15}")
DEFAULT_INVOICE_TYPE: Final = "1100"
_NOT_AN_OBJECT: Final = "Request body must be a JSON object"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND: Final = timedelta(milliseconds=1)


def error(
    code: str, message: str, source: str = "CLEARTAX", path: str | None = None
) -> dict[str, Any]:
    """Build one Error Details object (``Path`` only when given)."""
    details: dict[str, Any] = {"ErrorCode": code, "ErrorMessage": message, "ErrorSource": source}
    if path is not None:
        details["Path"] = path
    return details


def failed_body(errors: list[dict[str, Any]], *, status_endpoint: bool) -> dict[str, Any]:
    """Wrap validation errors: ``{"Status": "FAILED", "ErrorList": [...]}`` for the POSTs.

    The status endpoint's 400s carry only ``{"ErrorList": [...]}`` so that nothing but an
    activity ever has a top-level ``Status`` there.
    """
    if status_endpoint:
        return {"ErrorList": errors}
    return {"Status": "FAILED", "ErrorList": errors}


def encode(body: Any) -> bytes:
    """Serialize a JSON body compactly."""
    return json.dumps(body, separators=(",", ":")).encode()


AUTH_FAILED_BODY: Final = encode(error("100401", "Authentication Failed"))
NOT_ADMIN_BODY: Final = encode(error("5002", "User is not an Admin for this VAT"))
RATE_LIMITED_BODY: Final = encode(
    error("429", "Too many requests; retry after the time given in Retry-After")
)
SERVER_ERROR_BODY: Final = encode(error("4040", "Unhandled exception"))
NOT_FOUND_BODY: Final = encode(error("6003", "Resource not found"))
METHOD_NOT_ALLOWED_BODY: Final = encode(error("6002", "Method not allowed"))

_REASONS: Final = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def html_page(status: int) -> bytes:
    """A gateway-style HTML error page, as proxies in front of an API send."""
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html><head><title>{title}</title></head>"
        f"<body><center><h1>{title}</h1></center><hr><center>nginx</center></body></html>"
    ).encode()


def plain_error_body(status: int) -> bytes:
    """The bare error object the ``"http"`` fault answers with for ``status``."""
    if status == 401:
        return AUTH_FAILED_BODY
    if status == 403:
        return NOT_ADMIN_BODY
    if status == 404:
        return NOT_FOUND_BODY
    if status == 429:
        return RATE_LIMITED_BODY
    if status >= 500:
        return SERVER_ERROR_BODY
    return encode(error("6002", "Invalid request"))


def custom_body(body: str | bytes | Mapping[str, Any] | Sequence[Any]) -> tuple[bytes, str]:
    """Encode a caller-given body: text/bytes verbatim, anything else as JSON.

    Text is labelled ``text/html`` when it starts with ``<``, else ``application/json``
    (whether or not it parses: that is the point of a malformed body).
    """
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes):
        return body, HTML_TYPE if body.lstrip().startswith(b"<") else JSON_TYPE
    return encode(body), JSON_TYPE


def format_retry_after(seconds: float) -> str:
    """Format a ``Retry-After`` value.

    RFC 9110 allows only whole seconds (or an HTTP date), and real servers send integers; this
    writes whole seconds, rounding up, for anything of a second or more. Below one second it
    writes a decimal such as ``0.05`` so that tests can ask for millisecond pauses.
    """
    if seconds >= 1.0:
        return str(math.ceil(seconds))
    if seconds <= 0.0:
        return "0"
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text if text != "0" else "0.000001"


def timestamp(moment: datetime, fmt: TimestampFormat) -> str | int:
    """Render a UTC datetime as ``2026-11-22T10:15:30.120Z``, epoch seconds or epoch millis."""
    if fmt == "iso":
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    millis = (moment - _EPOCH) // _MILLISECOND
    return millis if fmt == "epoch_ms" else millis // 1000


def activity_body(
    *,
    state: str,
    created: str | int,
    updated: str | int,
    completed: str | int | None,
    checks: Sequence[str],
    failing_checks: Mapping[str, str],
) -> dict[str, Any]:
    """Build the canonical activity body of the contract (see cleartax-pcsid.md)."""
    total = len(checks)
    if state == "IN_PROGRESS":
        successes = failures = 0
        metadata: dict[str, Any] | None = None
    else:
        failures = len(failing_checks)
        successes = total - failures
        metadata = {"PcsidGenerated": "FAILED" if failures else "GENERATED"}
        for check in checks:
            metadata[check] = failing_checks.get(check, "SUCCEEDED")
    return {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": state,
        "CreatedAt": created,
        "UpdatedAt": updated,
        "CompletedAt": completed,
        "RequestMetaInfo": {
            "TotalCount": total,
            "SuccessCount": successes,
            "FailureCount": failures,
        },
        "ResponseInfo": {"ResponseMetaData": metadata},
        "ErrorList": [],
    }


def add_extra_fields(body: Any) -> None:
    """Add unknown keys at several nesting levels of a JSON body, in place."""
    if not isinstance(body, dict):
        return
    body["XRequestTrace"] = {"Region": "me-central-1", "Hops": [{"Name": "gateway", "Ms": 3}]}
    body["XSchemaRevision"] = 7
    for key in ("RequestMetaInfo", "ResponseInfo"):
        nested = body.get(key)
        if isinstance(nested, dict):
            nested["XNote"] = "unknown field for client robustness"
            metadata = nested.get("ResponseMetaData")
            if isinstance(metadata, dict):
                metadata["XCheckEngine"] = {"Version": "2.1", "Flags": []}
    errors = body.get("ErrorList")
    if isinstance(errors, list):
        for details in errors:
            if isinstance(details, dict):
                details["XHint"] = "see the portal"


def parse_onboarding_body(raw: bytes) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """Read ``DeviceId`` and ``Otp`` from a POST body; return them and the validation errors.

    The device id is returned whenever it is a string, even if invalid, so the request log can
    show it; the OTP only when valid.
    """
    try:
        data = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None, None, [error("6002", _NOT_AN_OBJECT)]
    if not isinstance(data, dict):
        return None, None, [error("6002", _NOT_AN_OBJECT)]
    device_id = data.get("DeviceId")
    otp = data.get("Otp")
    errors: list[dict[str, Any]] = []
    if not isinstance(device_id, str) or not device_id.strip():
        errors.append(error("6002", "DeviceId is mandatory", path="DeviceId"))
    elif len(device_id) > 36:
        errors.append(error("6002", "DeviceId must be at most 36 characters", path="DeviceId"))
    if not isinstance(otp, str) or not otp.strip():
        errors.append(error("6002", "Otp is mandatory", path="Otp"))
        otp = None
    return (device_id if isinstance(device_id, str) else None), otp, errors


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _device_details(data: Any, errors: list[dict[str, Any]]) -> dict[str, str]:
    """The checked ``DeviceDetails`` fields (snake_case keys); problems go to ``errors``."""
    if not isinstance(data, dict):
        errors.append(error("6002", "DeviceDetails is mandatory", path="DeviceDetails"))
        return {}
    fields: dict[str, str] = {}
    for key, name in (
        ("CommonName", "common_name"),
        ("Location", "location"),
        ("Industry", "industry"),
    ):
        value = _text(data, key)
        if value is None:
            errors.append(error("6002", f"{key} is mandatory", path=f"DeviceDetails.{key}"))
        else:
            fields[name] = value
    serial = data.get("EgsSerialNumber")
    where = "DeviceDetails.EgsSerialNumber"
    if not isinstance(serial, str) or not serial.strip():
        errors.append(error("6002", "EgsSerialNumber is mandatory", path=where))
    elif EGS_SERIAL_PATTERN.fullmatch(serial) is None:
        message = "EgsSerialNumber must be 1-<manufacturer>|2-<model>|3-<serial number>"
        errors.append(error("6002", message, path=where))
    else:
        fields["egs_serial_number"] = serial
    invoice_type = data.get("InvoiceType")
    if invoice_type is None:
        fields["invoice_type"] = DEFAULT_INVOICE_TYPE
    elif isinstance(invoice_type, str) and INVOICE_TYPE_PATTERN.fullmatch(invoice_type):
        fields["invoice_type"] = invoice_type
    else:
        message = "InvoiceType must be four 0/1 digits TSXY with XY 00 and not 0000, e.g. 1100"
        errors.append(error("6002", message, path="DeviceDetails.InvoiceType"))
    return fields


def parse_device_body(
    raw: bytes, *, with_otp: bool
) -> tuple[dict[str, str], str | None, list[dict[str, Any]]]:
    """Read a register-device / generate-csr body: checked fields, the OTP, the errors.

    Fields (snake_case keys): ``common_name``, ``egs_serial_number``, ``location``,
    ``industry``, ``invoice_type`` (default ``1100``) and ``org_vat`` (``OrganizationDetails.Vat``),
    each present only when valid. Other keys of either object are tolerated and ignored.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return {}, None, [error("6002", _NOT_AN_OBJECT)]
    if not isinstance(data, dict):
        return {}, None, [error("6002", _NOT_AN_OBJECT)]
    errors: list[dict[str, Any]] = []
    fields = _device_details(data.get("DeviceDetails"), errors)
    organization = data.get("OrganizationDetails")
    if not isinstance(organization, dict):
        errors.append(error("6002", "OrganizationDetails is mandatory", path="OrganizationDetails"))
    else:
        vat = organization.get("Vat")
        if isinstance(vat, str) and VAT_PATTERN.fullmatch(vat):
            fields["org_vat"] = vat
        else:
            message = "Vat is mandatory: the 15-digit VAT number"
            errors.append(error("6002", message, path="OrganizationDetails.Vat"))
    otp = None
    if with_otp:
        otp = _text(data, "Otp")
        if otp is None:
            errors.append(error("6002", "Otp is mandatory", path="Otp"))
    return fields, otp, errors
