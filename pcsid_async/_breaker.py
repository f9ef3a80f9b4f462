"""The batch's breaker for an API it cannot reach at all (wrong port, DNS failure, offline).

Each device of a batch against a dead host costs its full retries: 500 devices took 42 s, and
50,000 would take over an hour of their OTPs' hour. The breaker counts devices whose renewal
POST *provably never reached the server* (``APIConnectionError`` with
``may_have_reached_server=False`` after the transport's retries), in completion order. Any
sign of the server in between (an answer of any kind, or a connection that was made) resets
the count. At ``threshold`` in a row it opens: later devices are not sent and are SKIPPED
with the reason. Devices already in flight finish as they would have, so anything that may
have been sent keeps its own outcome; at most ``threshold + concurrency - 1`` devices try.
"""

from __future__ import annotations

from typing import Final

from ._errors import APIConnectionError, InvalidArgumentError

__all__ = ["UNREACHABLE_AFTER", "UnreachableBreaker", "check_threshold"]

# Five devices in a row, each after the transport's retries (4 attempts by default over a
# few seconds), is 20 refused connections without one answer between them: not a blip.
UNREACHABLE_AFTER: Final = 5


def check_threshold(value: object) -> None:
    """Refuse an ``unreachable_after`` that is not an integer >= 1 or ``None``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidArgumentError(
            f"unreachable_after must be an integer >= 1 or None, got {value!r}"
        )


class UnreachableBreaker:
    """Counts consecutive never-sent connection failures; opens at ``threshold``."""

    __slots__ = ("_first", "_last", "_run", "opened", "threshold")

    def __init__(self, threshold: int | None) -> None:
        self.threshold = threshold
        self._run = 0
        self._first = ""
        self._last: APIConnectionError | None = None
        self.opened: APIConnectionError | None = None

    def failed(self, device_id: str, exc: APIConnectionError) -> None:
        """A device's POST was never written to a connection (``exc`` says why)."""
        if self.opened is not None or self.threshold is None:
            return
        if not self._run:
            self._first = device_id
        self._run += 1
        self._last = exc
        if self._run >= self.threshold:
            self.opened = exc

    def reached(self) -> None:
        """The server was reached (it answered, or a connection was made): reset the run."""
        if self.opened is None:
            self._run = 0

    def reason(self) -> str:
        """Why a device is not sent, once the breaker is open."""
        return (
            f"not sent: the API is unreachable: {self._run} devices in a row (from "
            f"{self._first!r}) could not connect to it, the last with: {self.opened}. The OTP "
            "was not spent: renew this device again once the API can be reached"
        )
