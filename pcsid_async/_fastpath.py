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
_TIME_FIELDS: Final = ("CreatedAt", "UpdatedAt", "CompletedAt")
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


def fast_activity(body: dict[str, Any], activity_id: str) -> ActivityStatus | None:
    """Build the model straight from a well-typed body: what nearly every answer is.

    Every status poll decodes one, so this reads the parsed JSON with no converter hooks
    and as few calls as possible. It returns ``None`` at the first value that is not
    exactly the usual type (a container that is not an object, a numeric string, an epoch
    timestamp, an unknown enum value, ...); :func:`~pcsid_async._serde.structure_activity`
    then decodes the body with its tolerances and its error messages.
    """
    get = body.get
    status = get("Status")
    activity_type = get("ActivityType")
    if type(status) is not str or (activity_type is not None and type(activity_type) is not str):
        return None
    state = _STATES.get(status)
    if state is None:
        return None
    request_meta = get("RequestMetaInfo")
    response_info = get("ResponseInfo")
    meta = get("ResponseMetaData")
    if meta is None and response_info is not None:
        if type(response_info) is not dict:
            return None
        meta = response_info.get("ResponseMetaData")
    for container in (request_meta, response_info, meta):
        if container is not None and type(container) is not dict:
            return None
    times: list[Any] = list(map(get, _TIME_FIELDS))
    for i, value in enumerate(times):
        if value is not None:
            if type(value) is not str or value[4:5] != "-":
                return None
            try:
                if _fromisoformat is not None:  # pragma: no branch - 3.11+: "...Z" at C speed
                    parsed = _fromisoformat(value)
                    if parsed.tzinfo is not _UTC:
                        parsed = _parse_iso(value)
                else:  # pragma: no cover - Python 3.10
                    parsed = _parse_iso(value)
            except (ValueError, OverflowError):  # the converter words the complaint
                return None
            times[i] = parsed
    # Counts: RequestMetaInfo first (where the contract puts them), then the other places.
    counts: list[Any] = (
        [None] * 3 if request_meta is None else list(map(request_meta.get, _COUNT_NAMES))
    )
    if None in counts:
        counts = [_count((request_meta, response_info, body, meta), name) for name in _COUNT_NAMES]
    for count in counts:
        if count is not None and type(count) is not int:
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
        times[0],
        times[1],
        times[2],
        counts[0],
        counts[1],
        counts[2],
        generated,
        checks,
        errors_from_body(errors) if errors else (),
    )


def fast_renewal(body: dict[str, Any]) -> RenewalResult | None:
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
    if (device_id is not None and type(device_id) is not str) or (
        activity_id is not None and type(activity_id) is not str
    ):
        return None
    return RenewalResult(generated, device_id, (), activity_id)
