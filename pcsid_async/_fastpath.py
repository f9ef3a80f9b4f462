"""The fast decode path: models built straight from well-typed parsed JSON, no converter.

Every status poll and every renewal decodes one answer, so :func:`fast_activity` and
:func:`fast_renewal` read the usual body directly and return ``None`` at the first value
that is not exactly the usual type; the caller then takes the converter in
:mod:`pcsid_async._serde`, which tolerates every nesting and words every complaint.
``tests/test_fastpath.py`` proves both paths build equal models on generated bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._models import (
    ActivityState,
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    FrozenMap,
    GenerationStatus,
    RenewalResult,
)
from ._serde import _CHECK_NAMES, _COUNT_NAMES, _PASSED, _count, errors_from_body
from ._timestamps import _UTC, _fromisoformat, _parse_iso

__all__ = ["fast_activity", "fast_renewal"]

_STATES: Final[Mapping[str, ActivityState]] = {s.value: s for s in ActivityState}
_GENERATION: Final[Mapping[str, GenerationStatus]] = {g.value: g for g in GenerationStatus}
_CHECK_PAIRS: Final = tuple((c.value, c) for c in ComplianceCheck)
_NO_CHECKS: Final[FrozenMap[ComplianceCheck, CheckOutcome]] = FrozenMap()
# Check maps by their raw texts: a few shapes (all passed, none yet, a handful of failure
# texts) recur across thousands of polls, and a FrozenMap is immutable, so they are shared.
_CHECK_MAPS: dict[tuple[object, ...], FrozenMap[ComplianceCheck, CheckOutcome]] = {}
_MAX_CHECK_MAPS: Final = 256


def _fast_checks(raw: Mapping[str, object]) -> FrozenMap[ComplianceCheck, CheckOutcome] | None:
    texts = tuple(map(raw.get, _CHECK_NAMES))
    try:
        shared = _CHECK_MAPS.get(texts)
    except TypeError:  # an array or object where a text belongs
        return None
    if shared is not None:
        return shared
    checks: dict[ComplianceCheck, CheckOutcome] = {}
    for (_, check), text in zip(_CHECK_PAIRS, texts, strict=True):
        if text is None:
            continue
        if text == "SUCCEEDED":
            checks[check] = _PASSED
        elif type(text) is str:
            checks[check] = CheckOutcome.from_raw(text)
        else:
            return None
    made: FrozenMap[ComplianceCheck, CheckOutcome] = FrozenMap(checks)
    if len(_CHECK_MAPS) >= _MAX_CHECK_MAPS:
        _CHECK_MAPS.clear()
    _CHECK_MAPS[texts] = made
    return made


_BAD: Final = object()  # a value the fast path does not read: the converter decides
_STR_OR_NONE: Final[frozenset[Any]] = frozenset({str, type(None)})
_INT_OR_NONE: Final[frozenset[Any]] = frozenset({int, type(None)})
_DICT_OR_NONE: Final[frozenset[Any]] = frozenset({dict, type(None)})


def _fast_time(value: object) -> Any:
    """A timestamp of the usual form parsed, ``None`` kept, anything else ``_BAD``."""
    if value is None:
        return None
    if value.__class__ is not str or value[4:5] != "-":
        return _BAD
    try:
        if _fromisoformat is not None:  # pragma: no branch - 3.11+: "...Z" at C speed
            parsed = _fromisoformat(value)
            if parsed.tzinfo is _UTC:
                return parsed
        return _parse_iso(value)
    except (ValueError, OverflowError):  # the converter words the complaint
        return _BAD


def fast_activity(
    body: dict[str, Any],
    activity_id: str,
    status_code: int | None = None,
    request_id: str | None = None,
) -> ActivityStatus | None:
    """Build the model straight from a well-typed body: what nearly every answer is.

    Every status poll decodes one, so this reads the parsed JSON with no converter hooks
    and as few steps as possible, and sets the answer's ``status_code`` and ``request_id``
    as it builds the model. It returns ``None`` at the first value that is not exactly the
    usual type (a container that is not an object, a numeric string, an epoch timestamp,
    an unknown enum value, ...); :func:`~pcsid_async._serde.structure_activity` then
    decodes the body with its tolerances and its error messages.
    """
    get = body.get
    status: Any = get("Status")
    try:
        state = _STATES.get(status)  # an array or object raises TypeError: defer
    except TypeError:
        return None
    activity_type = get("ActivityType")
    request_meta = get("RequestMetaInfo")
    response_info = get("ResponseInfo")
    meta = get("ResponseMetaData")
    if (
        state is None
        or activity_type.__class__ not in _STR_OR_NONE
        or request_meta.__class__ not in _DICT_OR_NONE
        or response_info.__class__ not in _DICT_OR_NONE
    ):
        return None
    if meta is None and response_info is not None:
        meta = response_info.get("ResponseMetaData")
    if meta.__class__ not in _DICT_OR_NONE:
        return None
    created = _fast_time(get("CreatedAt"))
    raw_updated = get("UpdatedAt")
    updated = _fast_time(raw_updated)
    raw_completed = get("CompletedAt")
    # A finished activity's last update is its completion: the same text, parsed once.
    completed = updated if raw_completed == raw_updated else _fast_time(raw_completed)
    if created is _BAD or updated is _BAD or completed is _BAD:
        return None
    # Counts: RequestMetaInfo first (where the contract puts them), then the other places.
    total: Any
    success: Any
    failure: Any
    if request_meta is None:
        total = success = failure = None
    else:
        total, success, failure = map(request_meta.get, _COUNT_NAMES)
    if total is None or success is None or failure is None:
        places = (request_meta, response_info, body, meta)
        counts: list[Any] = [_count(places, name) for name in _COUNT_NAMES]
        total, success, failure = counts
    if (
        total.__class__ not in _INT_OR_NONE
        or success.__class__ not in _INT_OR_NONE
        or failure.__class__ not in _INT_OR_NONE
    ):
        return None
    generated: GenerationStatus | None = None
    checks = _NO_CHECKS
    if meta is not None:
        raw_generated = meta.get("PcsidGenerated")
        if raw_generated is not None:
            generated = _GENERATION.get(raw_generated) if type(raw_generated) is str else None
            if generated is None:
                return None
        found = _fast_checks(meta)
        if found is None:
            return None
        checks = found
    errors = get("ErrorList")
    return ActivityStatus(
        activity_id,
        activity_type,
        state,
        created,
        updated,
        completed,
        total,
        success,
        failure,
        generated,
        checks,
        errors_from_body(errors) if errors else (),
        request_id=request_id,
        status_code=status_code,
    )


def fast_renewal(
    body: dict[str, Any], status_code: int | None = None, request_id: str | None = None
) -> RenewalResult | None:
    """A renew-pcsid answer of the usual types, built directly; ``None`` for anything else.

    Answers with error details are left to the converter (and to the decoder's OTP
    scrubbing), as are numbers where text belongs and unknown statuses.
    """
    get = body.get
    status = get("Status")
    generated = _GENERATION.get(status) if type(status) is str else None
    if generated is None or get("ErrorList"):
        return None
    device_id = get("DeviceId")
    activity_id = get("PcsidGenerationActivityId")
    if device_id.__class__ not in _STR_OR_NONE or activity_id.__class__ not in _STR_OR_NONE:
        return None
    return RenewalResult(
        generated, device_id, (), activity_id, request_id=request_id, status_code=status_code
    )
