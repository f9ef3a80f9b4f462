"""The error-code catalogue: for each known provider ``ErrorCode``, what to do about it.

Pure data and one pure function: :func:`hint_for` turns the ``ErrorCode`` values of an
answer (and its HTTP status, for answers without a known code) into a short actionable hint.
:attr:`~pcsid_async.APIStatusError.hint` is computed with it; the CLI prints it. Hints are
chosen from the codes alone, never by reading the server's messages, and never quote any
part of the request (no token, no OTP).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["CODE_HINTS", "STATUS_HINTS", "hint_for"]

_OTP_HINT: Final = (
    "OTP rejected: was it generated in the same environment (sandbox/simulation vs "
    "production), for this VAT, and within the last hour? Each OTP works once: get a fresh "
    "one from the Fatoora portal."
)
_AUTH_HINT: Final = (
    "Authentication failed: check the x-cleartax-auth-token for this environment (sandbox "
    "and production tokens differ) and that it has not been revoked or regenerated."
)
_ADMIN_HINT: Final = (
    "User not found or not an Admin for this VAT: check the VAT number (15 digits; the group "
    "VAT for a VAT group) and give the token's user the Admin role for it in ClearTax."
)

#: ``ErrorCode`` to hint. Documented codes first, then those seen in the wild.
CODE_HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "5002": _ADMIN_HINT,
        "4040": (
            "Unhandled exception at ClearTax: usually transient. For a status poll, retry "
            "later; after a renew or generate-csid, poll or check the portal before sending "
            "again, since the OTP may have been spent. Quote the request id to support."
        ),
        "6002": (
            "Input rejected: check the field the error points at. If the production CSID is "
            "already generated for the device, it is onboarded: renew it instead of calling "
            "generate-csid again."
        ),
        "6003": (
            "Resource not found: check the device id (or activity id) and that it belongs to "
            "the VAT of the call; a device onboarded in sandbox does not exist in production."
        ),
        "8001": (
            "ZATCA validation failed: fix the field the error points at (device details, "
            "invoice type, serial number) and retry with a new OTP."
        ),
        "100401": _AUTH_HINT,
        "Invalid-OTP": _OTP_HINT,
    }
)

#: HTTP status to hint, for answers that carry no known code.
STATUS_HINTS: Final[Mapping[int, str]] = MappingProxyType(
    {
        401: _AUTH_HINT,
        403: _ADMIN_HINT,
        404: (
            "Path not found: check base_url (SANDBOX_URL or PRODUCTION_URL, including its "
            "/middle-east/ksa/einvoicing prefix)."
        ),
    }
)


def hint_for(codes: Iterable[str], *, status_code: int | None = None) -> str | None:
    """The hint for an answer's error codes, or ``None`` when nothing is known about them.

    Args:
        codes: the ``ErrorCode`` of each error detail, in order; matched exactly
            (codes are strings: ``"6002"``, ``"Invalid-OTP"``).
        status_code: the HTTP status; used only when no code is known.

    Returns:
        The distinct hints of the known codes, in the order of their first appearance,
        joined by a space; else the status's hint; else ``None``.
    """
    hints: list[str] = []
    for code in codes:
        hint = CODE_HINTS.get(code)
        if hint is not None and hint not in hints:
            hints.append(hint)
    if hints:
        return " ".join(hints)
    if status_code is None:
        return None
    return STATUS_HINTS.get(status_code)
