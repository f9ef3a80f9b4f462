"""Input validation shared by every layer: secrets and ids, activity ids, seconds, base URLs.

Pure functions, no I/O; each error message names the argument, never its value (it may be a
secret). ``_client`` re-exports the checks, where the CLI and the batch have long found them.
"""

from __future__ import annotations

import ipaddress
import math
import re
import ssl as ssl_module
import unicodedata
from typing import Final
from urllib.parse import quote

from yarl import URL

from ._errors import InvalidArgumentError

__all__ = [
    "check_activity_id",
    "check_base_url",
    "check_positive",
    "check_token_like",
    "per_call",
]

# Characters an activity id may never contain: they could change the URL's path or query.
_PATH_BREAKERS: Final = frozenset("/\\?#%")
# RFC 3986 pchar minus "%": everything else allowed in an id is percent-quoted.
_SAFE_SEGMENT_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)


def _bad_text(value: str) -> bool:
    """Whether ``value`` has whitespace or control characters (header/path injection)."""
    # Fast and exact (checked over every code point): isprintable() is False for each C*
    # and Z* character except the ASCII space, and every whitespace character is one of those.
    if value.isprintable() and " " not in value:
        return False
    return any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in value)


def check_token_like(value: object, name: str) -> str:
    """Validate a secret-or-id argument: a non-empty string, no whitespace or controls.

    The message names the argument, never its value (it may be a secret).
    """
    # The usual value, at once: printable with no space means no whitespace and no
    # control characters at all, so it is neither blank nor injectable.
    if type(value) is str and value and value.isprintable() and " " not in value:
        return value
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidArgumentError(f"{name} must not be blank")
    if _bad_text(value):
        raise InvalidArgumentError(f"{name} must not contain whitespace or control characters")
    return value


# The usual id (ClearTax's are 24 hex digits) needs neither quoting nor a closer look.
_PLAIN_SEGMENT: Final = re.compile(
    "[" + re.escape("".join(sorted(_SAFE_SEGMENT_CHARS))) + "]+"
).fullmatch


def check_activity_id(activity_id: object) -> str:
    """Validate an activity id: one safe URL path segment. Returns it percent-quoted."""
    if (
        type(activity_id) is str
        and _PLAIN_SEGMENT(activity_id)
        and ".." not in activity_id
        and activity_id != "."
    ):
        return activity_id
    value = check_token_like(activity_id, "activity_id")
    if value in (".", "..") or ".." in value or not _PATH_BREAKERS.isdisjoint(value):
        raise InvalidArgumentError(
            "activity_id must be a single path segment (no '/', '\\', '..', '?', '#', '%')"
        )
    if _SAFE_SEGMENT_CHARS.issuperset(value):
        return value
    return quote(value, safe="".join(sorted(_SAFE_SEGMENT_CHARS)))


def check_positive(value: object, name: str, *, allow_none: bool) -> float | None:
    """Validate a positive, finite number of seconds (or ``None`` where allowed)."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def per_call(timeout: object) -> float | None:
    """A per-call ``timeout=``: ``None`` (the client's), or positive seconds."""
    return None if timeout is None else check_positive(timeout, "timeout", allow_none=False)


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str | URL, *, ssl: ssl_module.SSLContext | bool) -> URL:
    """Validate ``base_url``: https (http only for loopback hosts), a host, no query."""
    try:
        url = URL(str(base_url))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"base_url is not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError("base_url must be an absolute https:// URL")
    loopback = _is_loopback_host(url.host)
    if url.scheme == "http" and not loopback:
        raise ValueError("base_url must use https (plain http is allowed only for loopback hosts)")
    if url.user or url.password:
        raise ValueError("base_url must not carry credentials")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    if ssl is False and not loopback:
        raise ValueError("ssl=False (no certificate verification) is allowed only for loopback")
    return url.with_path(url.path.rstrip("/")) if url.path != "/" else url.with_path("")
