"""Pure tests of the package's own cattrs converter: wire names, tolerant nesting, timestamps."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import cattrs
import pytest
from _bodies import canonical_body

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
    structure_activity,
    structure_csid,
    structure_renewal,
    wire_name,
)

UTC = dt.timezone.utc


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
