"""Wire timestamps: ISO-8601 (any offset, or none meaning UTC) and epoch seconds or ms.

:func:`parse_timestamp` turns each into an aware UTC datetime or raises ``ValueError``; the
converter (:mod:`pcsid_async._serde`) and the fast path (:mod:`pcsid_async._fastpath`) share it.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from typing import Final

__all__ = ["parse_timestamp"]

_ISO_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# Epoch values above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD: Final = 100_000_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _from_epoch(value: float) -> dt.datetime:
    if abs(value) >= _MS_THRESHOLD:
        # Exact timedelta arithmetic: value / 1000 in floats can land a microsecond off.
        return _EPOCH + dt.timedelta(milliseconds=value)
    return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _parse_iso_slow(text: str) -> dt.datetime:
    match = _ISO_RE.match(text)
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = dt.timezone.utc
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tz = dt.timezone(sign * offset)
    parsed = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )
    return parsed.astimezone(dt.timezone.utc)


def _parse_iso_fast(text: str) -> dt.datetime:
    # Python 3.11's fromisoformat reads every ISO-8601 form we accept ("Z" included).
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return _parse_iso_slow(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


_parse_iso: Final = _parse_iso_fast if sys.version_info >= (3, 11) else _parse_iso_slow
_fromisoformat: Final = dt.datetime.fromisoformat if sys.version_info >= (3, 11) else None
_UTC: Final = dt.timezone.utc


def parse_timestamp(value: object) -> dt.datetime:
    """Parse a wire timestamp into an aware UTC datetime.

    Accepts ISO-8601 (``Z`` or an offset, with or without fractions; no zone means UTC) and
    epoch seconds or milliseconds, as numbers or numeric strings.

    Raises:
        ValueError: for anything else.

    """
    if isinstance(value, bool):
        raise ValueError("expected a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        try:
            return _from_epoch(value)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch value out of range: {value!r}") from exc
    if isinstance(value, str):
        text = value.strip()
        if text[4:5] == "-" and text[:4].isdigit():
            # An ISO date, which float() can never parse: skip the cost of its exception.
            return _parse_iso(text)
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text)
        return parse_timestamp(number)
    raise ValueError(f"expected a timestamp, got {type(value).__name__}")
