"""Pure decoding: (status, headers, body) -> model, or a typed exception. No I/O here.

Everything the wire can send lands in exactly one of: a model, an
:class:`~pcsid_async.APIStatusError` subclass, or a
:class:`~pcsid_async.ResponseDecodeError`. The secrets of the call (the token, the OTP) are
scrubbed from every piece of server-provided text that ends up in an exception.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final, TypeVar

import attrs

from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
)
from ._fastpath import fast_activity, fast_renewal
from ._models import ActivityState, ActivityStatus, CsidGenerationResult, ErrorDetail, RenewalResult
from ._serde import errors_from_body, structure_activity, structure_csid, structure_renewal

__all__ = [
    "activity_decoder",
    "decode_activity",
    "decode_csid",
    "decode_renewal",
    "error_for_status",
    "parse_retry_after",
    "renewal_decoder",
    "scrub",
    "stamp",
]

_T = TypeVar("_T")

BODY_EXCERPT_LIMIT: Final = 500
_REDACTED: Final = "[redacted]"
# Secrets shorter than this are not scrubbed: replacing "1" everywhere would mangle text
# while protecting nothing (no real token or ZATCA OTP is that short).
_MIN_SECRET_LEN: Final = 4
_REQUEST_ID_HEADERS: Final = (
    "x-request-id",
    "x-correlation-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-amzn-trace-id",
)
_STATUS_ERRORS: Final[Mapping[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
_NOT_JSON: Final = object()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text``."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LEN and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _scrub_detail(detail: ErrorDetail, secrets: tuple[str, ...]) -> ErrorDetail:
    # Every field is server-provided text, and str(detail) shows the path too.
    message = scrub(detail.message, secrets)
    code = scrub(detail.code, secrets)
    source = None if detail.source is None else scrub(detail.source, secrets)
    path = None if detail.path is None else scrub(detail.path, secrets)
    if (message, code, source, path) == (detail.message, detail.code, detail.source, detail.path):
        return detail
    return attrs.evolve(detail, message=message, code=code, source=source, path=path)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Parse ``Retry-After`` (delay-seconds or an HTTP date) into seconds from now.

    Returns ``None`` when absent or unreadable (non-ASCII, not finite, a garbled date);
    never a negative number (a negative delay or a date in the past is 0). A value past the
    client's ``max_retry_after`` is capped or refused by the caller, never slept.
    """
    if value is None:
        return None
    text = value.strip()
    if not text.isascii():  # delay-seconds and HTTP dates are ASCII (float() takes "١٢")
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# json.loads' own scanner (the C one where built), called directly: one value from index 0.
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_object(body: bytes) -> dict[str, Any] | None:
    """A UTF-8 JSON object (the contract's answers), or ``None`` (then the long road).

    The usual body starts with its value and ends with it (or with JSON whitespace); any
    other body, leading whitespace included, takes the long road through ``json.loads``.
    """
    try:
        text = body.decode()
        parsed, end = _SCAN(text, 0)
    except (ValueError, RecursionError, StopIteration):
        return None
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return None  # extra data after the value: json.loads refuses it, and says why
    return parsed if type(parsed) is dict else None


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _excerpt(body: bytes, secrets: tuple[str, ...]) -> str:
    # Decode a little more than the limit so scrubbing can see a secret cut at the edge.
    text = body[: BODY_EXCERPT_LIMIT * 4].decode("utf-8", errors="replace")
    return scrub(text, secrets)[:BODY_EXCERPT_LIMIT]


def _request_id(headers: Mapping[str, str]) -> str | None:
    # The first non-empty one, looked up without a Python loop (every answer has one call).
    return next(filter(None, map(headers.get, _REQUEST_ID_HEADERS)), None)


_Answer = TypeVar("_Answer")


def stamp(result: _Answer, status: int, headers: Mapping[str, str]) -> _Answer:
    """Set the answer's HTTP status and request id on a result the decoder just built.

    Only ever on a fresh model (built for this answer, never shared), so writing its two
    envelope fields in place is safe, and it costs far less than ``attrs.evolve`` on every
    answer.
    """
    object.__setattr__(result, "status_code", status)
    object.__setattr__(result, "request_id", _request_id(headers))
    return result


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    secrets: tuple[str, ...] = (),
) -> APIStatusError:
    """Build the typed exception for an error answer (any status outside 2xx)."""
    parsed = _load_json(body)
    errors = tuple(
        _scrub_detail(d, secrets)
        for d in (errors_from_body(parsed) if parsed is not _NOT_JSON else ())
    )
    if status in _STATUS_ERRORS:
        cls = _STATUS_ERRORS[status]
    elif 500 <= status <= 599:
        cls = InternalServerError
    else:
        cls = APIStatusError
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    message = f"{status} {phrase} for {method} {path}"
    if errors:
        message += ": " + "; ".join(str(e) for e in errors[:3])
        if len(errors) > 3:
            message += f" (+{len(errors) - 3} more)"
    elif 300 <= status <= 399:
        message += " (redirects are not followed: check base_url)"
    return cls(
        message,
        status_code=status,
        method=method,
        path=path,
        errors=errors,
        body_excerpt=_excerpt(body, secrets),
        request_id=_request_id(headers),
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )


def _decode_success(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    structure: Callable[[object], _T],
    *,
    method: str,
    path: str,
    secrets: tuple[str, ...],
) -> _T:
    if not 200 <= status <= 299:
        raise error_for_status(status, headers, body, method=method, path=path, secrets=secrets)
    parsed = _load_json(body)
    if parsed is _NOT_JSON:
        raise ResponseDecodeError(
            "body is not JSON" if body.strip() else "body is empty",
            body_excerpt=_excerpt(body, secrets),
            status_code=status,
        )
    try:
        return structure(parsed)
    except ResponseDecodeError as exc:
        # The reason quotes the offending value, which may be a secret echoed back.
        raise ResponseDecodeError(
            scrub(exc.reason, secrets), body_excerpt=_excerpt(body, secrets), status_code=status
        ) from None


_OtpResult = TypeVar("_OtpResult", RenewalResult, CsidGenerationResult)


def _decode_otp_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    structure: Callable[[object], _OtpResult],
    *,
    method: str,
    path: str,
    secrets: tuple[str, ...],
) -> _OtpResult:
    result = _decode_success(
        status, headers, body, structure, method=method, path=path, secrets=secrets
    )
    if result.errors and secrets:
        # The server may echo the OTP in an error message of a 200 FAILED answer.
        result = attrs.evolve(
            result, errors=tuple(_scrub_detail(e, secrets) for e in result.errors)
        )
    return result


def renewal_decoder(
    secrets: tuple[str, ...],
) -> Callable[[int, Mapping[str, str], bytes], RenewalResult]:
    """The decoder of one ``renew`` call: :func:`decode_renewal` with its secrets bound."""

    def decode(status: int, headers: Mapping[str, str], body: bytes) -> RenewalResult:
        return decode_renewal(status, headers, body, secrets=secrets)

    return decode


def decode_renewal(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/onboarding/renew-pcsid",
    secrets: tuple[str, ...] = (),
) -> RenewalResult:
    """Decode a renew-pcsid answer."""
    if status == 200:  # the usual answer, by the shortest road (anything odd takes the long one)
        parsed = _json_object(body)
        if parsed is not None:
            fast = fast_renewal(parsed, 200, _request_id(headers))
            if fast is not None:
                return fast
    result = _decode_otp_answer(
        status, headers, body, structure_renewal, method=method, path=path, secrets=secrets
    )
    return stamp(result, status, headers)


def decode_csid(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/onboarding/generate-csid",
    secrets: tuple[str, ...] = (),
) -> CsidGenerationResult:
    """Decode a generate-csid answer."""
    result = _decode_otp_answer(
        status, headers, body, structure_csid, method=method, path=path, secrets=secrets
    )
    return stamp(result, status, headers)


def _is_activity_body(parsed: object) -> bool:
    if not isinstance(parsed, Mapping):
        return False
    state = parsed.get("Status")
    return (
        "ActivityType" in parsed and isinstance(state, str) and state in ActivityState.__members__
    )


def activity_decoder(
    activity_id: str, path: str, secrets: tuple[str, ...]
) -> Callable[[int, Mapping[str, str], bytes], ActivityStatus]:
    """The decoder of one ``get_status`` call: :func:`decode_activity` with its arguments bound.

    The usual answer (200, a UTF-8 JSON object of the usual types) is built here by the
    shortest road; anything else takes :func:`decode_activity`, which words every complaint.
    """

    def decode(status: int, headers: Mapping[str, str], body: bytes) -> ActivityStatus:
        if status == 200:
            parsed = _json_object(body)
            if parsed is not None:
                fast = fast_activity(parsed, activity_id, 200, _request_id(headers))
                if fast is not None:
                    return fast
        return decode_activity(
            status, headers, body, activity_id=activity_id, path=path, secrets=secrets
        )

    return decode


def decode_activity(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    activity_id: str,
    method: str = "GET",
    path: str = "",
    secrets: tuple[str, ...] = (),
) -> ActivityStatus:
    """Decode a pcsid-status answer, including the FAILED-as-HTTP-500 quirk.

    A 500 whose body is an activity (``ActivityType`` and a valid ``Status``) is the
    provider's way of reporting a FAILED activity and decodes to an
    :class:`~pcsid_async.ActivityStatus`. Any other 500 is an
    :class:`~pcsid_async.InternalServerError`.
    """
    path = path or f"/onboarding/{activity_id}/pcsid-status"
    if status == 500:
        parsed = _load_json(body)
        if _is_activity_body(parsed):
            try:
                return stamp(structure_activity(parsed, activity_id), status, headers)
            except ResponseDecodeError:
                pass
        raise error_for_status(status, headers, body, method=method, path=path, secrets=secrets)
    result = _decode_success(
        status,
        headers,
        body,
        lambda parsed: structure_activity(parsed, activity_id),
        method=method,
        path=path,
        secrets=secrets,
    )
    return stamp(result, status, headers)
