"""Frozen, slotted result models. Snake_case only: wire names are ``_serde``'s business."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from typing import TypeVar

import attrs

__all__ = [
    "ActivityState",
    "ActivityStatus",
    "CheckOutcome",
    "ComplianceCheck",
    "CsidGenerationResult",
    "DeviceIdResult",
    "DeviceRegistrationResult",
    "ErrorDetail",
    "FrozenMap",
    "GenerationStatus",
    "RenewalResult",
]

_K = TypeVar("_K")
_V = TypeVar("_V")


class GenerationStatus(enum.Enum):
    """Whether a CSID/PCSID was generated (renew, generate-csid, and an activity's final answer)."""

    GENERATED = "GENERATED"
    FAILED = "FAILED"


class ActivityState(enum.Enum):
    """The state of a PCSID generation activity."""

    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ComplianceCheck(enum.Enum):
    """The six ZATCA compliance checks an activity runs; values are the wire names."""

    STANDARD_TAX_INVOICE = "StandardTaxInvoice"
    STANDARD_TAX_INVOICE_CREDIT = "StandardTaxInvoiceCredit"
    STANDARD_TAX_INVOICE_DEBIT = "StandardTaxInvoiceDebit"
    SIMPLIFIED_TAX_INVOICE = "SimplifiedTaxInvoice"
    SIMPLIFIED_TAX_INVOICE_CREDIT = "SimplifiedTaxInvoiceCredit"
    SIMPLIFIED_TAX_INVOICE_DEBIT = "SimplifiedTaxInvoiceDebit"


class FrozenMap(Mapping[_K, _V]):
    """A read-only, hashable mapping (so frozen models holding one stay hashable)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[_K, _V] | None = None) -> None:
        self._data: dict[_K, _V] = dict(data) if data else {}
        self._hash: int | None = None

    def __getitem__(self, key: _K) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[_K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@attrs.frozen
class ErrorDetail:
    """One entry of the provider's Error Details list.

    Attributes:
        code: ``ErrorCode``, always a string (``"6002"``, ``"100401"``, ``"Invalid-OTP"``).
        message: ``ErrorMessage``, human-readable.
        source: ``ErrorSource`` (``"ZATCA"``, ``"CLEARTAX"`` or whatever the server sent).
        path: the request field a validation error points at, if given.

    """

    code: str
    message: str = ""
    source: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = f" (at {self.path})" if self.path else ""
        return f"[{self.code}] {self.message}{where}"


@attrs.frozen
class RenewalResult:
    """The answer to ``renew()``.

    Attributes:
        status: ``GENERATED``, or ``FAILED`` on validation issues.
        device_id: the device, when the server echoed it (it does not on failure).
        errors: error details (empty on success).
        activity_id: a PCSID generation activity to follow, if the server started one.
        request_id: the server's request id header (``x-request-id`` and kin), if sent:
            quote it in a support ticket. Not part of equality.
        status_code: the HTTP status of the answer. Not part of equality.

    """

    status: GenerationStatus
    device_id: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    activity_id: str | None = None
    # The answer's envelope, set by the decoder; equality ignores it (equal answers are equal
    # whichever request brought them).
    request_id: str | None = attrs.field(default=None, eq=False, kw_only=True)
    status_code: int | None = attrs.field(default=None, eq=False, kw_only=True)

    @property
    def ok(self) -> bool:
        """Whether the new PCSID was generated."""
        return self.status is GenerationStatus.GENERATED


@attrs.frozen
class CsidGenerationResult:
    """The answer to ``generate_csid()``: the CSID, and the activity generating the PCSID.

    Attributes:
        status: ``GENERATED`` or ``FAILED`` (about the CSID).
        device_id: the device, when echoed.
        activity_id: ``PcsidGenerationActivityId``: keep it to poll with ``await_activity``.
        errors: error details (empty on success).
        request_id: the server's request id header (``x-request-id`` and kin), if sent:
            quote it in a support ticket. Not part of equality.
        status_code: the HTTP status of the answer. Not part of equality.

    """

    status: GenerationStatus
    device_id: str | None = None
    activity_id: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    # The answer's envelope, set by the decoder; equality ignores it (equal answers are equal
    # whichever request brought them).
    request_id: str | None = attrs.field(default=None, eq=False, kw_only=True)
    status_code: int | None = attrs.field(default=None, eq=False, kw_only=True)

    @property
    def ok(self) -> bool:
        """Whether the CSID was generated."""
        return self.status is GenerationStatus.GENERATED


@attrs.frozen
class CheckOutcome:
    """The outcome of one compliance check.

    Attributes:
        passed: the server reported ``SUCCEEDED``.
        messages: the error messages, split on commas and stripped (empty when passed).
        raw: the text exactly as the server sent it.

    """

    passed: bool
    messages: tuple[str, ...]
    raw: str

    @classmethod
    def from_raw(cls, raw: str) -> CheckOutcome:
        """Build from the wire text: ``SUCCEEDED`` passes, anything else is error messages."""
        text = raw.strip()
        if text.upper() == "SUCCEEDED":
            return cls(passed=True, messages=(), raw=raw)
        return cls(
            passed=False,
            messages=tuple(m for m in (p.strip() for p in text.split(",")) if m),
            raw=raw,
        )


@attrs.frozen
class ActivityStatus:
    """The status of a PCSID generation activity.

    Attributes:
        activity_id: the id that was polled.
        activity_type: ``ActivityType`` (``ZATCA_COMPLIANCE_INVOICE``), if sent.
        state: IN_PROGRESS, SUCCEEDED or FAILED.
        created_at: when the activity started (timezone-aware UTC), if sent.
        updated_at: the last update (timezone-aware UTC), if sent.
        completed_at: when it completed; ``None`` while in progress.
        total_count: how many checks run (6, or 3 for single-kind devices), if sent.
        success_count: checks passed, if sent (final only once complete).
        failure_count: checks failed, if sent (final only once complete).
        pcsid_generated: the final answer, ``None`` while in progress.
        checks: the outcome of each check the server reported.
        errors: error details the server attached.
        request_id: the server's request id header (``x-request-id`` and kin), if sent:
            quote it in a support ticket. Not part of equality.
        status_code: the HTTP status of the answer. Not part of equality.

    """

    activity_id: str
    activity_type: str | None
    state: ActivityState
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    total_count: int | None = None
    success_count: int | None = None
    failure_count: int | None = None
    pcsid_generated: GenerationStatus | None = None
    checks: Mapping[ComplianceCheck, CheckOutcome] = attrs.field(factory=FrozenMap)
    errors: tuple[ErrorDetail, ...] = ()
    # The answer's envelope, set by the decoder; equality ignores it (equal answers are equal
    # whichever request brought them).
    request_id: str | None = attrs.field(default=None, eq=False, kw_only=True)
    status_code: int | None = attrs.field(default=None, eq=False, kw_only=True)

    @property
    def is_terminal(self) -> bool:
        """Whether the activity has finished (SUCCEEDED or FAILED)."""
        return self.state is not ActivityState.IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        """Whether the activity finished SUCCEEDED without reporting the PCSID as FAILED."""
        return (
            self.state is ActivityState.SUCCEEDED
            and self.pcsid_generated is not GenerationStatus.FAILED
        )

    @property
    def failed_checks(self) -> tuple[ComplianceCheck, ...]:
        """The checks that did not pass, in the enum's order."""
        return tuple(c for c in ComplianceCheck if c in self.checks and not self.checks[c].passed)


@attrs.frozen
class DeviceRegistrationResult(CsidGenerationResult):
    """The answer to ``register_device()``: the new device, its CSID, and its PCSID activity.

    The same fields as :class:`CsidGenerationResult` (register-device answers like
    generate-csid, for a device it has just made): ``device_id`` is the new device's id
    (keep it: renewals need it); poll ``activity_id`` with ``await_activity``; ``ok`` means
    the device and its CSID were made.
    """


@attrs.frozen
class DeviceIdResult:
    """The answer to ``generate_device_id()``: the device id for a VAT and EGS serial number.

    ClearTax keeps one device per VAT and ``EgsSerialNumber``: asking again answers with the
    existing id and an error entry that is really a warning. An answer that names a device id
    is a success, and its error entries are ``warnings``; ``errors`` holds the entries of an
    answer without one.

    Attributes:
        status: ``GENERATED`` or ``FAILED``, as the server said.
        device_id: the device's id, new or existing.
        errors: error details of a failed answer (one without a device id).
        warnings: error entries of an answer that named a device id (e.g. 6002 "Device
            already exists for the given EgsSerialNumber").
        request_id: the server's request id header (``x-request-id`` and kin), if sent:
            quote it in a support ticket. Not part of equality.
        status_code: the HTTP status of the answer. Not part of equality.

    """

    status: GenerationStatus
    device_id: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    warnings: tuple[ErrorDetail, ...] = attrs.field(default=(), kw_only=True)
    # The answer's envelope, set by the decoder; equality ignores it (equal answers are equal
    # whichever request brought them).
    request_id: str | None = attrs.field(default=None, eq=False, kw_only=True)
    status_code: int | None = attrs.field(default=None, eq=False, kw_only=True)

    @property
    def ok(self) -> bool:
        """Whether the answer named a device id."""
        return self.device_id is not None

    @property
    def already_existed(self) -> bool:
        """Whether the device existed before this call (the provider's 6002 warning)."""
        return any(w.code == "6002" for w in self.warnings)
