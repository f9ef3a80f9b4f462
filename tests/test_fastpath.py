"""The fast decode path (pcsid_async._fastpath) agrees with the converter on every body shape.

One property proves it for both answers the fast path builds (pcsid-status and renew-pcsid):
on generated bodies, in every nesting the contract tolerates and with odd JSON values
anywhere, the fast path either builds a model equal to the converter's (field by field, of
the same types) or defers (``None``); it never builds a model where the converter refuses.
The other tests show that deferring is the exception: the usual answers take the fast path.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import attrs
from _bodies import CHECKS, canonical_body
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from pcsid_async import ActivityStatus, ComplianceCheck, ErrorDetail, ResponseDecodeError, _fastpath
from pcsid_async._fastpath import fast_activity, fast_renewal
from pcsid_async._serde import structure_activity, structure_renewal

UTC = dt.timezone.utc
Strategy = st.SearchStrategy[Any]

_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=1),
    st.dictionaries(st.sampled_from(["ErrorCode", "x"]), st.integers(), max_size=1),
)
_USUAL_TIMES = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=3))]),
    ).map(dt.datetime.isoformat),
    st.sampled_from(["2026-11-22T10:15:30.120Z", "2026-11-22T10:15:30"]),
)
_COUNTS = dict.fromkeys(("TotalCount", "SuccessCount", "FailureCount"), st.integers(0, 6))
_USUAL_ERRORS = st.sampled_from([[], None, [{"ErrorCode": 7, "ErrorMessage": "m"}]])


def _object_or_null(inner: Strategy) -> Strategy:
    return st.one_of(inner, inner, inner, st.none())


def _usual_activity_bodies() -> Strategy:
    """pcsid-status bodies of the usual types, in every nesting the contract tolerates.

    Counts in ``RequestMetaInfo``, ``ResponseInfo`` and at top level (any subset, so the
    precedence between them is exercised); ``ResponseMetaData`` inside ``ResponseInfo``, at
    top level, both or neither; each container present, absent or ``null``; unknown keys at
    every level.
    """
    meta = st.fixed_dictionaries(
        {},
        optional={
            "PcsidGenerated": st.sampled_from(["GENERATED", "FAILED"]),
            **dict.fromkeys(CHECKS, st.one_of(st.just("SUCCEEDED"), st.text(max_size=8))),
            "Unknown": _ODD_VALUES,
        },
    )
    response_info = st.fixed_dictionaries(
        {}, optional={**_COUNTS, "ResponseMetaData": _object_or_null(meta), "Unknown": _ODD_VALUES}
    )
    return st.fixed_dictionaries(
        {
            "Status": st.sampled_from(["SUCCEEDED", "FAILED", "IN_PROGRESS"]),
            "ActivityType": st.sampled_from(["ZATCA_COMPLIANCE_INVOICE", None]),
            "CreatedAt": _USUAL_TIMES,
            "UpdatedAt": _USUAL_TIMES,
            "CompletedAt": _USUAL_TIMES,
            "ErrorList": _USUAL_ERRORS,
        },
        optional={
            "RequestMetaInfo": _object_or_null(st.fixed_dictionaries({}, optional=_COUNTS)),
            "ResponseInfo": _object_or_null(response_info),
            "ResponseMetaData": _object_or_null(meta),
            **_COUNTS,
            "Unknown": _ODD_VALUES,
        },
    )


def _usual_renewal_bodies() -> Strategy:
    """renew-pcsid answers of the usual types: a status, the ids, no error details."""
    ids = st.one_of(st.none(), st.text(max_size=8))
    return st.fixed_dictionaries(
        {"Status": st.sampled_from(["GENERATED", "FAILED"])},
        optional={
            "DeviceId": ids,
            "PcsidGenerationActivityId": ids,
            "ErrorList": st.sampled_from([[], None]),
            "Unknown": _ODD_VALUES,
        },
    )


_TIME_MISSES = st.sampled_from(
    [
        "2026-11-22T13:15:30+03:00",
        "2026-11-22 10:15:30",
        "2026-11-22T10:15",
        " 2026-11-22T10:15:30Z",
        "2026-11-22T10:15:30Z ",
        "2026-13-22T10:15:30Z",
        "0001-01-01T00:00:00+05:00",
        "1763806530",
        "1763806530120",
        1763806530,
        1763806530120,
        1763806530.5,
    ]
)
_CONTAINER_MISSES = st.sampled_from([[], [{}], "x", 1, True, {}])
# Per field, the values just off the usual type that the converter may still accept or refuse.
_NEAR_MISSES: Mapping[str, Strategy] = {
    "Status": st.sampled_from(["DONE", "succeeded", "GENERATED", "IN_PROGRESS", "FAILED", 1]),
    "ActivityType": st.sampled_from([7, "", "OTHER"]),
    **dict.fromkeys(("CreatedAt", "UpdatedAt", "CompletedAt"), _TIME_MISSES),
    **dict.fromkeys(_COUNTS, st.sampled_from(["6", " 6", 6.0, 6.5, -1, True, 10**20])),
    "ErrorList": st.sampled_from(
        [{}, {"ErrorCode": "6002"}, [{"ErrorCode": 7, "ErrorMessage": "m"}], [{"x": 1}], "x"]
    ),
    "PcsidGenerated": st.sampled_from(["NOPE", "generated", 1]),
    **dict.fromkeys(CHECKS, st.sampled_from(["succeeded ", " , ", "", 0, ["x"], {"a": 1}])),
    **dict.fromkeys(("RequestMetaInfo", "ResponseInfo", "ResponseMetaData"), _CONTAINER_MISSES),
    "DeviceId": st.sampled_from([1, 2.5, True, ""]),
    "PcsidGenerationActivityId": st.sampled_from([1, 2.5, True, ""]),
}
_ADDABLE: Final = ("Status", "ResponseMetaData", "TotalCount", "ErrorList", CHECKS[0])


def _fields(body: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (object, key) of a body, nested objects included."""
    found = [(body, key) for key in body]
    for value in body.values():
        if type(value) is dict:
            found.extend(_fields(value))
    return found


@st.composite
def _near_miss(draw: st.DrawFn, usual: Strategy) -> dict[str, Any]:
    """A usual body with one to three fields set (or added) just off the usual type."""
    # A copy: sampled_from hands out the same list objects every time, and editing them in
    # place would change what later draws give for the same choices (a flaky strategy).
    body: dict[str, Any] = copy.deepcopy(draw(usual))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 4)) == 0:  # a field where it does not usually sit
            parent = draw(st.sampled_from([body, *(o for o, _ in _fields(body))]))
            key = draw(st.sampled_from(_ADDABLE))
        else:
            parent, key = draw(st.sampled_from(_fields(body)))
        parent[key] = draw(st.one_of(_NEAR_MISSES.get(key, _ODD_VALUES), _ODD_VALUES))
    return body


def _both_paths(kind: str, body: dict[str, Any]) -> tuple[object | None, object]:
    """What the fast path built (``None``: it deferred), and what the converter makes."""
    fast = fast_activity(body, "a") if kind == "activity" else fast_renewal(body)
    try:
        slow = structure_activity(body, "a") if kind == "activity" else structure_renewal(body)
    except ResponseDecodeError as exc:
        return fast, exc
    return fast, slow


_ACTIVITY_BODIES = st.one_of(
    _usual_activity_bodies(),
    _near_miss(_usual_activity_bodies()),
    _near_miss(_usual_activity_bodies()),
)
_RENEWAL_BODIES = st.one_of(_usual_renewal_bodies(), _near_miss(_usual_renewal_bodies()))


def _field_types(model: object) -> list[type]:
    return [type(value) for value in attrs.astuple(model, recurse=False)]


@settings(max_examples=800)
@example(("activity", {"Status": "SUCCEEDED", "ResponseInfo": [], "CreatedAt": None}))
@given(
    st.one_of(
        _ACTIVITY_BODIES.map(lambda body: ("activity", body)),
        _RENEWAL_BODIES.map(lambda body: ("renewal", body)),
    )
)
def test_fast_path_builds_the_converters_model_or_defers(case: tuple[str, dict[str, Any]]) -> None:
    kind, body = case
    sent = copy.deepcopy(body)
    fast, slow = _both_paths(kind, body)
    assert body == sent  # neither path changes the parsed body
    event(f"{kind}: {'fast' if fast is not None else 'deferred'}")
    if fast is None:
        return  # deferring is always allowed: the converter then decides
    assert not isinstance(slow, ResponseDecodeError), "only the converter may refuse a body"
    assert fast == slow
    assert _field_types(fast) == _field_types(slow)


class TestUsualAnswersTakeTheFastPath:
    """Deferring is for the unusual: well-typed bodies, in any nesting, are built directly."""

    @given(_usual_activity_bodies())
    def test_well_typed_activity_bodies(self, body: dict[str, Any]) -> None:
        fast, slow = _both_paths("activity", body)
        assert fast is not None
        assert fast == slow

    @given(_usual_renewal_bodies())
    def test_well_typed_renewal_answers(self, body: dict[str, Any]) -> None:
        fast, slow = _both_paths("renewal", body)
        assert fast is not None
        assert fast == slow

    def test_canonical_body_with_failure_texts_and_errors(self) -> None:
        body = canonical_body(CompletedAt=None, ErrorList=[{"ErrorCode": "1", "ErrorMessage": "m"}])
        body["ResponseInfo"]["ResponseMetaData"][CHECKS[0]] = "x, y"
        fast, slow = _both_paths("activity", body)
        assert isinstance(fast, ActivityStatus)
        assert fast == slow
        assert fast.checks[ComplianceCheck(CHECKS[0])].messages == ("x", "y")
        assert fast.errors == (ErrorDetail(code="1", message="m"),)
        again, _ = _both_paths("activity", body)  # the check map is shared, the model equal
        assert isinstance(again, ActivityStatus)
        assert again == fast
        assert again.checks is fast.checks

    def test_unhashable_check_text_defers_to_the_converter(self) -> None:
        body = canonical_body()
        body["ResponseInfo"]["ResponseMetaData"][CHECKS[0]] = ["x"]
        fast, slow = _both_paths("activity", body)
        assert fast is None
        assert isinstance(slow, ResponseDecodeError)

    def test_shared_check_maps_stay_bounded(self) -> None:
        for n in range(_fastpath._MAX_CHECK_MAPS + 5):
            body = canonical_body()
            body["ResponseInfo"]["ResponseMetaData"][CHECKS[0]] = f"failure {n}"
            fast, slow = _both_paths("activity", body)
            assert fast == slow
        assert 0 < len(_fastpath._CHECK_MAPS) <= _fastpath._MAX_CHECK_MAPS
