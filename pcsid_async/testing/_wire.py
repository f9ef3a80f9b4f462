"""JSON wire shapes the fake emits: error bodies, activity bodies, timestamps, fault bodies.

Pure functions and constants, no state. Every builder returns a fresh ``dict`` so a caller may
mutate it (the ``extra_fields`` fault does) without touching shared data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

#: Where the real API mounts its routes; the fake mounts them at the same path.
API_PREFIX: Final = "/middle-east/ksa/einvoicing"
RENEW_PATH: Final = API_PREFIX + "/onboarding/renew-pcsid"
GENERATE_PATH: Final = API_PREFIX + "/onboarding/generate-csid"
STATUS_PATH: Final = API_PREFIX + "/onboarding/{activity_id}/pcsid-status"

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
        return None, None, [error("6002", "Request body must be a JSON object")]
    if not isinstance(data, dict):
        return None, None, [error("6002", "Request body must be a JSON object")]
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
