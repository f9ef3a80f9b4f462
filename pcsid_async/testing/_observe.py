"""What the fake observed: the request log, counters, in-flight figures and the ledger view."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pcsid_async.testing._records import ProcessedRenewal, RecordedRequest
from pcsid_async.testing._state import _Exchange, _FakeState

_LOG_ENDPOINTS: Final = ("renew", "generate", "status", "register", "generate_csr", "other")


def _check_log_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in _LOG_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {_LOG_ENDPOINTS} or None, got {endpoint!r}")


class _Observer(_FakeState):
    """``requests``, ``request_times``, ``count``, ``in_flight``, ``reset_stats``, ``ledger``."""

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, in the order requests were read (in-flight ones too).

        Raises:
            RuntimeError: when built with ``record_requests=False``.
        """
        self._require_log()
        return list(self._log)

    def request_times(self, endpoint: str | None = None) -> list[float]:
        """The ``received_at`` of each logged request (of ``endpoint`` only, when given).

        Raises:
            ValueError: on an unknown endpoint name.
            RuntimeError: when built with ``record_requests=False``.
        """
        _check_log_endpoint(endpoint)
        self._require_log()
        return [r.received_at for r in self._log if endpoint is None or r.endpoint == endpoint]

    def count(
        self,
        endpoint: str | None = None,
        device_id: str | None = None,
        activity_id: str | None = None,
    ) -> int:
        """How many requests were received, optionally only those matching every filter given.

        ``endpoint`` alone (or no filter) is answered from counters; filtering by device or
        activity scans the request log.

        Raises:
            ValueError: on an unknown endpoint name.
            RuntimeError: filtering by device or activity with ``record_requests=False``.
        """
        _check_log_endpoint(endpoint)
        if device_id is None and activity_id is None:
            return self._counts["total" if endpoint is None else endpoint]
        self._require_log()
        return sum(
            1
            for r in self._log
            if (endpoint is None or r.endpoint == endpoint)
            and (device_id is None or r.device_id == device_id)
            and (activity_id is None or r.activity_id == activity_id)
        )

    @property
    def in_flight(self) -> int:
        """How many requests the fake is handling right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since creation or ``reset_stats()``."""
        return self._max_in_flight

    def reset_stats(self) -> None:
        """Clear the request log and counters and restart ``max_in_flight`` from ``in_flight``.

        Devices, OTPs, activities and the ledger are untouched.
        """
        self._log = []
        self._log_epoch += 1
        self._counts.clear()
        self._max_in_flight = self._in_flight

    @property
    def ledger(self) -> Mapping[str, list[ProcessedRenewal]]:
        """Device id to the renewals/generations the fake performed for it, in order.

        A read-only live view (do not mutate the lists); devices never processed are absent.
        """
        return MappingProxyType(self._ledger)

    def _require_log(self) -> None:
        if not self._record:
            raise RuntimeError("the request log is off: this fake has record_requests=False")

    def _record_of(
        self, ex: _Exchange, status: int | None, answered: float | None
    ) -> RecordedRequest:
        return RecordedRequest(
            method=ex.method,
            path=ex.path,
            endpoint=ex.endpoint,
            vat=ex.vat,
            device_id=ex.device_id,
            activity_id=ex.activity_id,
            status=status,
            fault=ex.fault,
            received_at=ex.received_at,
            answered_at=answered,
            authorized=ex.authorized,
        )

    def _count_and_log(self, ex: _Exchange) -> None:
        counts = self._counts
        counts["total"] += 1
        counts[ex.endpoint] += 1
        if self._record:
            ex.log_epoch = self._log_epoch
            ex.log_index = len(self._log)
            self._log.append(self._record_of(ex, None, None))
