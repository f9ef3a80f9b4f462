"""Pure tests of the package's own cattrs converter: wire names, tolerant nesting, timestamps."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcsid_async import (
    ActivityState,
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    CsidGenerationResult,
    ErrorDetail,
    GenerationStatus,
    RenewalResult,
    ResponseDecodeError,
)
from pcsid_async._serde import (
    converter,
    errors_from_body,
    parse_timestamp,
    structure_activity,
    structure_csid,
    structure_renewal,
    wire_name,
)

UTC = dt.timezone.utc
CHECKS = [c.value for c in ComplianceCheck]


def canonical_body(**changes: Any) -> dict[str, Any]:
    """The contract's canonical SUCCEEDED activity body, with top-level keys replaced."""
    body: dict[str, Any] = {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": "SUCCEEDED",
        "CreatedAt": "2026-11-22T10:15:30.120Z",
        "UpdatedAt": "2026-11-22T10:15:41.906Z",
        "CompletedAt": "2026-11-22T10:15:41.906Z",
        "RequestMetaInfo": {"TotalCount": 6, "SuccessCount": 6, "FailureCount": 0},
        "ResponseInfo": {
            "ResponseMetaData": {
                "PcsidGenerated": "GENERATED",
                **dict.fromkeys(CHECKS, "SUCCEEDED"),
            }
        },
        "ErrorList": [],
    }
    body.update(changes)
    return body


def counts(status: ActivityStatus) -> tuple[int | None, int | None, int | None]:
    return status.total_count, status.success_count, status.failure_count


class TestWireNames:
    @pytest.mark.parametrize(
        ("field", "wire"),
        [
            ("device_id", "DeviceId"),
            ("activity_type", "ActivityType"),
            ("success_count", "SuccessCount"),
            ("completed_at", "CompletedAt"),
            ("pcsid_generated", "PcsidGenerated"),
        ],
    )
    def test_snake_case_field_becomes_pascal_case_by_rule(self, field: str, wire: str) -> None:
        assert wire_name(field) == wire

    @pytest.mark.parametrize(
        ("field", "wire"),
        [
            ("errors", "ErrorList"),
            ("activity_id", "PcsidGenerationActivityId"),
            ("state", "Status"),
            ("code", "ErrorCode"),
            ("message", "ErrorMessage"),
            ("source", "ErrorSource"),
        ],
    )
    def test_documented_exceptions_to_the_rule(self, field: str, wire: str) -> None:
        assert wire_name(field) == wire

    @pytest.mark.parametrize(
        "model", [ErrorDetail, RenewalResult, CsidGenerationResult, CheckOutcome, ActivityStatus]
    )
    def test_models_carry_no_wire_annotations(self, model: type) -> None:
        """Wire names live in _serde's rule, not in field metadata or aliases on the models."""
        for field in attrs.fields(model):
            assert not field.metadata
            assert field.alias == field.name


class TestOwnConverter:
    def test_converter_is_not_cattrs_global_converter(self) -> None:
        assert converter is not cattrs.global_converter

    def test_global_converter_is_left_untouched(self) -> None:
        """Registering our hooks did not teach cattrs' global converter the wire names."""
        with pytest.raises(cattrs.BaseValidationError):
            cattrs.global_converter.structure({"Status": "GENERATED"}, RenewalResult)

    def test_renewal_is_structured_from_pascal_case(self) -> None:
        result = structure_renewal({"Status": "GENERATED", "DeviceId": "eb645fd8", "ErrorList": []})
        assert result == RenewalResult(status=GenerationStatus.GENERATED, device_id="eb645fd8")

    def test_csid_result_carries_the_activity_id(self) -> None:
        result = structure_csid(
            {
                "Status": "GENERATED",
                "DeviceId": "d-1",
                "PcsidGenerationActivityId": "628f37b61ed71a6638b848e4",
                "ErrorList": [],
            }
        )
        assert result.activity_id == "628f37b61ed71a6638b848e4"
        assert result.device_id == "d-1"

    def test_unknown_keys_are_ignored_at_every_level(self) -> None:
        result = structure_renewal(
            {
                "Status": "FAILED",
                "Surprise": {"Nested": [1, 2]},
                "ErrorList": [{"ErrorCode": "6002", "ErrorMessage": "m", "XHint": "x"}],
            }
        )
        assert result.errors == (ErrorDetail(code="6002", message="m"),)

    def test_missing_optional_fields_and_nulls_become_defaults(self) -> None:
        result = structure_renewal({"Status": "FAILED", "DeviceId": None, "ErrorList": None})
        assert result == RenewalResult(status=GenerationStatus.FAILED)

    @pytest.mark.parametrize("wire", [6, 6.0, "6", " 6"])
    def test_whole_number_counts_in_any_json_spelling(self, wire: object) -> None:
        body = {"Status": "IN_PROGRESS", "TotalCount": wire}
        assert structure_activity(body, "a").total_count == 6

    def test_error_detail_is_structured_from_its_wire_names(self) -> None:
        wire = {"ErrorCode": "6002", "ErrorMessage": "m", "ErrorSource": "ZATCA", "Path": "Otp"}
        assert converter.structure(wire, ErrorDetail) == ErrorDetail("6002", "m", "ZATCA", "Otp")
        with pytest.raises(ValueError, match="Error Details"):
            converter.structure({"Other": 1}, ErrorDetail)

    def test_numeric_error_code_is_kept_as_a_string(self) -> None:
        result = structure_renewal({"Status": "FAILED", "ErrorList": [{"ErrorCode": 6002}]})
        assert result.errors[0].code == "6002"


class TestErrorsFromBody:
    def test_object_with_error_list(self) -> None:
        body = {
            "Status": "FAILED",
            "ErrorList": [
                {
                    "ErrorCode": "6002",
                    "ErrorMessage": "bad",
                    "ErrorSource": "CLEARTAX",
                    "Path": "Otp",
                },
                {"ErrorCode": "8001", "ErrorMessage": "zatca says no", "ErrorSource": "ZATCA"},
            ],
        }
        assert errors_from_body(body) == (
            ErrorDetail("6002", "bad", "CLEARTAX", "Otp"),
            ErrorDetail("8001", "zatca says no", "ZATCA", None),
        )

    def test_bare_error_object(self) -> None:
        body = {"ErrorCode": "100401", "ErrorMessage": "Authentication Failed", "ErrorSource": "X"}
        assert errors_from_body(body) == (ErrorDetail("100401", "Authentication Failed", "X"),)

    def test_top_level_array(self) -> None:
        body = [{"ErrorCode": "Invalid-OTP", "ErrorMessage": "expired"}, "junk", {"Other": 1}]
        assert errors_from_body(body) == (ErrorDetail("Invalid-OTP", "expired"),)

    @pytest.mark.parametrize("body", [None, "html", 3, [], {}, {"ErrorList": None}])
    def test_anything_else_yields_no_details(self, body: object) -> None:
        assert errors_from_body(body) == ()

    def test_never_raises_on_error_lists_nested_past_the_recursion_limit(self) -> None:
        """json on Python 3.13 parses nesting deeper than the recursion limit: stay iterative."""
        body: object = [{"ErrorCode": "1"}]
        for _ in range(5000):
            body = {"ErrorList": body}
        assert errors_from_body(body) == (ErrorDetail("1"),)


class TestTimestamps:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-22T10:15:30.120Z", dt.datetime(2026, 11, 22, 10, 15, 30, 120000, UTC)),
            ("2026-11-22T10:15:30Z", dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)),
            ("2026-11-22T13:15:30+03:00", dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)),
            ("2026-11-22T05:15:30.5-05:00", dt.datetime(2026, 11, 22, 10, 15, 30, 500000, UTC)),
            ("2026-11-22T10:15:30", dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)),
            ("2026-11-22T13:15:30 +0300", dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)),
            ("2026-11-22 10:15:30,25z", dt.datetime(2026, 11, 22, 10, 15, 30, 250000, UTC)),
            ("2026-11-22T10:15:30.1234567Z", dt.datetime(2026, 11, 22, 10, 15, 30, 123456, UTC)),
        ],
    )
    def test_iso_8601_variants_become_aware_utc(self, text: str, expected: dt.datetime) -> None:
        parsed = parse_timestamp(text)
        assert parsed == expected
        assert parsed.tzinfo is UTC

    @pytest.mark.parametrize(
        "value",
        [1795342530, 1795342530.0, 1795342530120, "1795342530", "1795342530120", 1795342530120.0],
    )
    def test_epoch_seconds_and_milliseconds(self, value: object) -> None:
        parsed = parse_timestamp(value)
        assert parsed.replace(microsecond=0) == dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)
        assert parsed.tzinfo is UTC

    def test_epoch_milliseconds_keep_their_fraction(self) -> None:
        assert parse_timestamp(1795342530120).microsecond == 120000

    @pytest.mark.parametrize(
        "value",
        [True, None, {}, [], "", "yesterday", "2026-13-45T99:99:99Z", math.inf, math.nan, 1e300],
    )
    def test_anything_else_is_a_value_error(self, value: object) -> None:
        with pytest.raises(ValueError, match=r"\w"):
            parse_timestamp(value)

    @given(
        st.datetimes(
            min_value=dt.datetime(1974, 1, 1),  # epoch ms below 1e11 (1973) read as seconds
            max_value=dt.datetime(2999, 12, 31),
            timezones=st.just(UTC),
        ),
        st.sampled_from(["iso_z", "iso_offset", "epoch_s", "epoch_ms"]),
    )
    def test_every_documented_format_round_trips(self, moment: dt.datetime, fmt: str) -> None:
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        wire: object
        if fmt == "iso_z":
            wire = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
        elif fmt == "iso_offset":
            wire = moment.astimezone(dt.timezone(dt.timedelta(hours=3))).isoformat()
        elif fmt == "epoch_s":
            wire = int(moment.timestamp())
            moment = moment.replace(microsecond=0)
        else:
            wire = round(moment.timestamp() * 1000)
        parsed = parse_timestamp(wire)
        assert parsed == moment
        assert parsed.tzinfo is UTC

    @given(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(),
            st.from_regex(
                r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?\Z"
            ),
        )
    )
    def test_any_json_scalar_is_an_aware_utc_datetime_or_a_value_error(self, value: object) -> None:
        try:
            parsed = parse_timestamp(value)
        except ValueError:
            return
        assert parsed.tzinfo is UTC


class TestActivityNesting:
    def test_canonical_shape(self) -> None:
        status = structure_activity(canonical_body(), "628f37b61ed71a6638b848e4")
        assert status.activity_id == "628f37b61ed71a6638b848e4"
        assert status.activity_type == "ZATCA_COMPLIANCE_INVOICE"
        assert status.state is ActivityState.SUCCEEDED
        assert status.created_at == dt.datetime(2026, 11, 22, 10, 15, 30, 120000, UTC)
        assert status.updated_at == dt.datetime(2026, 11, 22, 10, 15, 41, 906000, UTC)
        assert status.completed_at == status.updated_at
        assert counts(status) == (6, 6, 0)
        assert status.pcsid_generated is GenerationStatus.GENERATED
        assert set(status.checks) == set(ComplianceCheck)
        assert all(outcome.passed for outcome in status.checks.values())
        assert status.errors == ()

    def test_counts_inside_response_info(self) -> None:
        body = canonical_body(RequestMetaInfo=None)
        body["ResponseInfo"].update(TotalCount=3, SuccessCount=2, FailureCount=1)
        assert counts(structure_activity(body, "a")) == (3, 2, 1)

    def test_counts_at_top_level(self) -> None:
        body = canonical_body(TotalCount=3, SuccessCount=3, FailureCount=0)
        del body["RequestMetaInfo"]
        assert counts(structure_activity(body, "a")) == (3, 3, 0)

    def test_response_meta_data_at_top_level(self) -> None:
        meta = {"PcsidGenerated": "FAILED", "SimplifiedTaxInvoice": "bad qr, bad hash"}
        body = canonical_body(ResponseMetaData=meta, ResponseInfo=None, Status="FAILED")
        status = structure_activity(body, "a")
        assert status.pcsid_generated is GenerationStatus.FAILED
        outcome = status.checks[ComplianceCheck.SIMPLIFIED_TAX_INVOICE]
        assert outcome.messages == ("bad qr", "bad hash")

    @pytest.mark.parametrize("container", [None, "absent"])
    def test_containers_null_or_absent(self, container: object) -> None:
        body = canonical_body(RequestMetaInfo=container, ResponseInfo=container)
        if container == "absent":
            del body["RequestMetaInfo"], body["ResponseInfo"]
        status = structure_activity(body, "a")
        assert counts(status) == (None, None, None)
        assert status.pcsid_generated is None
        assert status.checks == {}

    def test_in_progress_with_null_meta_data(self) -> None:
        body = canonical_body(
            Status="IN_PROGRESS",
            CompletedAt=None,
            RequestMetaInfo={"TotalCount": 6, "SuccessCount": 0, "FailureCount": 0},
            ResponseInfo={"ResponseMetaData": None},
        )
        status = structure_activity(body, "a")
        assert status.state is ActivityState.IN_PROGRESS
        assert status.completed_at is None
        assert status.pcsid_generated is None
        assert status.checks == {}
        assert counts(status) == (6, 0, 0)

    def test_missing_check_fields_are_left_out(self) -> None:
        meta = {"PcsidGenerated": "GENERATED", "SimplifiedTaxInvoice": "SUCCEEDED"}
        body = canonical_body(ResponseInfo={"ResponseMetaData": meta})
        status = structure_activity(body, "a")
        assert list(status.checks) == [ComplianceCheck.SIMPLIFIED_TAX_INVOICE]

    def test_null_fields_become_none(self) -> None:
        body = canonical_body(
            ActivityType=None,
            CreatedAt=None,
            UpdatedAt=None,
            RequestMetaInfo={"TotalCount": None, "SuccessCount": None},
            ErrorList=None,
        )
        status = structure_activity(body, "a")
        assert status.activity_type is None
        assert status.created_at is None
        assert counts(status) == (None, None, None)
        assert status.errors == ()

    def test_epoch_timestamps(self) -> None:
        body = canonical_body(CreatedAt=1795342530, UpdatedAt=1795342541906, CompletedAt=None)
        status = structure_activity(body, "a")
        assert status.created_at == dt.datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)
        assert status.updated_at == dt.datetime(2026, 11, 22, 10, 15, 41, 906000, UTC)

    def test_unknown_keys_anywhere_are_ignored(self) -> None:
        body = canonical_body(XTrace={"A": [1]})
        body["RequestMetaInfo"]["XNote"] = "n"
        body["ResponseInfo"]["XNote"] = "n"
        body["ResponseInfo"]["ResponseMetaData"]["XEngine"] = {"Version": "2"}
        assert structure_activity(body, "a") == structure_activity(canonical_body(), "a")

    def test_error_list_is_kept(self) -> None:
        body = canonical_body(ErrorList=[{"ErrorCode": "8001", "ErrorMessage": "m"}])
        assert structure_activity(body, "a").errors == (ErrorDetail("8001", "m"),)

    def test_the_json_round_trip_of_the_canonical_body_is_stable(self) -> None:
        body = json.loads(json.dumps(canonical_body()))
        assert structure_activity(body, "a") == structure_activity(canonical_body(), "a")


class TestDecodeReasons:
    """Undecodable bodies raise ResponseDecodeError whose reason names the wire field."""

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"Status": None}, "Status"),
            ({"Status": "DONE"}, "Status"),
            ({"Status": 3}, "Status"),
            ({"CreatedAt": "yesterday"}, "CreatedAt"),
            ({"CompletedAt": True}, "CompletedAt"),
            ({"RequestMetaInfo": {"TotalCount": "six"}}, "TotalCount"),
            ({"RequestMetaInfo": {"FailureCount": 1.5}}, "FailureCount"),
            ({"ActivityType": {"Nested": 1}}, "ActivityType"),
            ({"ResponseInfo": {"ResponseMetaData": {"PcsidGenerated": "MAYBE"}}}, "PcsidGenerated"),
            (
                {"ResponseInfo": {"ResponseMetaData": {"StandardTaxInvoice": ["x"]}}},
                "StandardTaxInvoice",
            ),
        ],
    )
    def test_activity_reason_names_the_wire_field(
        self, changes: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(ResponseDecodeError) as caught:
            structure_activity(canonical_body(**changes), "a")
        assert field in caught.value.reason
        assert field in str(caught.value)

    def test_missing_status_says_it_is_missing(self) -> None:
        body = canonical_body()
        del body["Status"]
        with pytest.raises(ResponseDecodeError, match="Status: required field missing"):
            structure_activity(body, "a")

    def test_unknown_status_names_the_value_and_the_allowed_ones(self) -> None:
        with pytest.raises(ResponseDecodeError, match=r"Status: 'DONE' is not one of IN_PROGRESS"):
            structure_activity(canonical_body(Status="DONE"), "a")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "Status"),
            ({"Status": "OK"}, "Status"),
            ({"Status": "GENERATED", "DeviceId": {"a": 1}}, "DeviceId"),
            (
                {"Status": "GENERATED", "PcsidGenerationActivityId": [1]},
                "PcsidGenerationActivityId",
            ),
        ],
    )
    def test_renewal_reason_names_the_wire_field(self, body: dict[str, Any], field: str) -> None:
        with pytest.raises(ResponseDecodeError) as caught:
            structure_renewal(body)
        assert caught.value.reason.startswith(field)

    @pytest.mark.parametrize(
        ("data", "kind"), [([], "an array"), ("x", "a string"), (None, "null"), (1, "a number")]
    )
    def test_non_object_says_what_it_got(self, data: object, kind: str) -> None:
        for structure in (structure_renewal, structure_csid):
            with pytest.raises(ResponseDecodeError, match=f"expected a JSON object, got {kind}"):
                structure(data)
        with pytest.raises(ResponseDecodeError, match=f"expected a JSON object, got {kind}"):
            structure_activity(data, "a")


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=1),
)


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``good``, sometimes any odd JSON value: so both decode paths get exercised."""
    return st.one_of(good, good, good, good, good, _ODD_VALUES)


_TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-11-22T10:15:30.120Z",
            "2026-11-22T13:15:30+03:00",
            "2026-11-22 10:15:30",
            "2026-11-22T10:15",
            " 2026-11-22T10:15:30Z",
            "2026-11-22T10:15:30Z ",
            "2026-13-22T10:15:30Z",
            "0001-01-01T00:00:00+05:00",
            "1763806530",
            "1763806530120",
        ]
    ),
    st.sampled_from(["2026-11-22T10:15:30.120Z", "2026-11-22T13:15:30+03:00", None] * 4),
    st.integers(0, 2_000_000_000_000),
    _ODD_VALUES,
)
_WELL_TYPED_TIMES = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=3))]),
    ).map(dt.datetime.isoformat),
    st.sampled_from(["2026-11-22T10:15:30.120Z", "2026-11-22T10:15:30"]),
)
_CHECK_TEXTS = _mostly(st.sampled_from(["SUCCEEDED", "succeeded ", "bad qr, bad hash", "", " , "]))


def _both_paths(body: dict[str, Any]) -> tuple[ActivityStatus | None, ActivityStatus | Exception]:
    """What the fast path built (``None``: it deferred) and what the converter alone makes."""
    from pcsid_async import _serde

    real = _serde.fast_activity
    seen: list[ActivityStatus | None] = []

    def spy(*args: Any) -> ActivityStatus | None:
        seen.append(real(*args))
        return seen[-1]

    try:
        _serde.fast_activity = spy  # type: ignore[assignment]
        with contextlib.suppress(ResponseDecodeError):
            structure_activity(body, "a")
        _serde.fast_activity = lambda *args: None  # type: ignore[assignment]
        try:
            slow: ActivityStatus | Exception = structure_activity(body, "a")
        except ResponseDecodeError as exc:
            slow = exc
    finally:
        _serde.fast_activity = real  # type: ignore[assignment]
    return (seen[0] if seen else None), slow


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """A wire body from flat fields: counts in RequestMetaInfo, checks in ResponseInfo."""
    body = {k: v for k, v in flat.items() if k not in ("Counts", "Meta")}
    if "Counts" in flat:
        body["RequestMetaInfo"] = flat["Counts"]
    if "Meta" in flat:
        body["ResponseInfo"] = {"ResponseMetaData": flat["Meta"]}
    return body


class TestActivityFastPath:
    """The direct decode of well-typed bodies agrees with the converter on every body."""

    def test_canonical_body_takes_the_fast_path(self) -> None:
        body = canonical_body(CompletedAt=None, ErrorList=[{"ErrorCode": "1", "ErrorMessage": "m"}])
        body["ResponseInfo"]["ResponseMetaData"][CHECKS[0]] = "x, y"
        fast, slow = _both_paths(body)
        assert fast is not None
        assert fast == slow
        assert fast.checks[ComplianceCheck(CHECKS[0])].messages == ("x", "y")
        assert fast.errors == (ErrorDetail(code="1", message="m"),)
        again, _ = _both_paths(body)  # the check map is shared, the model equal
        assert again == fast
        assert again is not None
        assert again.checks is fast.checks

    def test_unhashable_check_text_defers_to_the_converter(self) -> None:
        body = canonical_body()
        body["ResponseInfo"]["ResponseMetaData"][CHECKS[0]] = ["x"]
        fast, slow = _both_paths(body)
        assert fast is None
        assert isinstance(slow, ResponseDecodeError)

    @given(
        st.fixed_dictionaries(
            {
                "Status": _mostly(st.sampled_from(["SUCCEEDED", "FAILED", "IN_PROGRESS"])),
                "ActivityType": _mostly(st.sampled_from(["ZATCA_COMPLIANCE_INVOICE", None])),
                "CreatedAt": _TIMESTAMPS,
                "UpdatedAt": _TIMESTAMPS,
                "CompletedAt": _TIMESTAMPS,
                "ErrorList": _mostly(
                    st.sampled_from([[], None, [{"ErrorCode": 7, "ErrorMessage": "m"}]])
                ),
            },
            optional={
                "Counts": st.fixed_dictionaries(
                    {},
                    optional={
                        "TotalCount": _mostly(st.sampled_from([6, 3, "6"])),
                        "SuccessCount": _mostly(st.sampled_from([6, 0, 6.0])),
                        "FailureCount": _mostly(st.just(0)),
                    },
                ),
                "Meta": st.fixed_dictionaries(
                    {},
                    optional={
                        "PcsidGenerated": _mostly(st.sampled_from(["GENERATED", "FAILED", "NOPE"])),
                        **dict.fromkeys(CHECKS, _CHECK_TEXTS),
                    },
                ),
            },
        )
    )
    @settings(max_examples=300)
    def test_fast_path_equals_the_converter(self, flat: dict[str, Any]) -> None:
        fast, slow = _both_paths(_nest(flat))
        if isinstance(slow, Exception):
            assert fast is None  # only the converter words complaints
            return
        if fast is not None:
            assert fast == slow
            assert [type(v) for v in attrs.astuple(fast, recurse=False)] == [
                type(v) for v in attrs.astuple(slow, recurse=False)
            ]

    @given(
        st.fixed_dictionaries(
            {
                "Status": st.sampled_from(["SUCCEEDED", "FAILED", "IN_PROGRESS"]),
                "ActivityType": st.sampled_from(["ZATCA_COMPLIANCE_INVOICE", None]),
                "CreatedAt": _WELL_TYPED_TIMES,
                "UpdatedAt": _WELL_TYPED_TIMES,
                "CompletedAt": _WELL_TYPED_TIMES,
                "ErrorList": st.sampled_from([[], None, [{"ErrorCode": 7, "ErrorMessage": "m"}]]),
            },
            optional={
                "Counts": st.fixed_dictionaries(
                    {},
                    optional=dict.fromkeys(
                        ("TotalCount", "SuccessCount", "FailureCount"), st.integers(0, 6)
                    ),
                ),
                "Meta": st.fixed_dictionaries(
                    {},
                    optional={
                        "PcsidGenerated": st.sampled_from(["GENERATED", "FAILED"]),
                        **dict.fromkeys(
                            CHECKS, st.one_of(st.just("SUCCEEDED"), st.text(max_size=8))
                        ),
                    },
                ),
            },
        )
    )
    def test_well_typed_bodies_take_the_fast_path(self, flat: dict[str, Any]) -> None:
        fast, slow = _both_paths(_nest(flat))
        assert fast is not None
        assert fast == slow


def _renewal_both_paths(body: dict[str, Any]) -> tuple[RenewalResult | None, object]:
    from pcsid_async import _serde

    try:
        slow: object = structure_renewal(body)
    except ResponseDecodeError as exc:
        slow = exc
    return _serde.fast_renewal(body), slow


class TestRenewalFastPath:
    @given(
        st.fixed_dictionaries(
            {"Status": st.sampled_from(["GENERATED", "FAILED"])},
            optional={
                "DeviceId": st.one_of(st.none(), st.text(max_size=8)),
                "PcsidGenerationActivityId": st.one_of(st.none(), st.text(max_size=8)),
                "ErrorList": st.sampled_from([[], None]),
            },
        )
    )
    def test_well_typed_answers_take_the_fast_path(self, body: dict[str, Any]) -> None:
        fast, slow = _renewal_both_paths(body)
        assert fast is not None
        assert fast == slow

    @given(
        st.fixed_dictionaries(
            {"Status": _mostly(st.sampled_from(["GENERATED", "FAILED", "NOPE"]))},
            optional={
                "DeviceId": _mostly(st.text(max_size=8)),
                "PcsidGenerationActivityId": _mostly(st.text(max_size=8)),
                "ErrorList": _mostly(st.sampled_from([[], [{"ErrorCode": "6002"}]])),
            },
        )
    )
    def test_fast_path_equals_the_converter(self, body: dict[str, Any]) -> None:
        fast, slow = _renewal_both_paths(body)
        if isinstance(slow, Exception):
            assert fast is None
        elif fast is not None:
            assert fast == slow
