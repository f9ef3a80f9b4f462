"""Configuration objects: frozen, keyword-only, every default with its reason."""

from __future__ import annotations

import math

import attrs

__all__ = ["RetryPolicy"]


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How requests are retried: always with backoff and jitter, never forever.

    Safe calls (``get_status``) are retried on connection errors, timeouts, 429, 502, 503,
    504 and a 500 that is not a failed activity's answer. Calls that carry a single-use OTP
    (``renew``, ``generate_csid``) are retried only when the request provably never reached
    the server, and on 429 (which the server answers without processing), unless
    ``retry_unsafe`` is set.

    Attributes:
        max_attempts: total tries of one call, the first included.
        initial_delay: the first backoff delay in seconds; it doubles per retry.
        max_delay: the cap of one backoff delay.
        max_elapsed: no retry starts after this many seconds since the first try.
        max_retry_after: the longest ``Retry-After`` honoured; a longer one raises at once.
        retry_unsafe: also retry OTP-carrying POSTs after timeouts, drops and 5xx. Only for
            callers who accept that an OTP may be spent twice (the second try then fails).

    """

    # 4 tries ride out a typical blip (a deploy, one dropped connection) without stretching
    # a single call past about ten seconds of backoff.
    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    # Half a second is long enough for a restarting gateway, short enough not to be noticed.
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    # 8 s caps the exponential growth: beyond that, waiting longer rarely helps one call.
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    # One minute bounds the whole retry effort, well inside a one-hour OTP lifetime.
    max_elapsed: float = attrs.field(default=60.0, validator=_non_negative)
    # Two minutes: a server asking for more is having an outage, not a hiccup; say so.
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    # Off: an OTP works once, and a silent second POST could spend it or fail confusingly.
    retry_unsafe: bool = False

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that tries every call once."""
        return cls(max_attempts=1)

    def backoff_delay(self, retry: int) -> float:
        """The un-jittered delay before retry number ``retry`` (1 for the first retry)."""
        return float(min(self.max_delay, self.initial_delay * (2 ** (retry - 1))))
