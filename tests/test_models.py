"""Pure tests of the result models and the retry policy: frozen, slotted, snake_case, typed."""

from __future__ import annotations

import datetime as dt
import inspect
import math
import re
from typing import Any

import attrs
import pytest

from pcsid_async import (
    ActivityState,
    ActivityStatus,
    CheckOutcome,
    ComplianceCheck,
    CsidGenerationResult,
    ErrorDetail,
    GenerationStatus,
    RenewalResult,
    RetryPolicy,
)
from pcsid_async._models import FrozenMap

MODELS = [ErrorDetail, RenewalResult, CsidGenerationResult, CheckOutcome, ActivityStatus]


def a_status(
    state: ActivityState = ActivityState.SUCCEEDED,
    pcsid: GenerationStatus | None = GenerationStatus.GENERATED,
    checks: dict[ComplianceCheck, CheckOutcome] | None = None,
) -> ActivityStatus:
    return ActivityStatus(
        activity_id="a",
        activity_type="ZATCA_COMPLIANCE_INVOICE",
        state=state,
        created_at=dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc),
        pcsid_generated=pcsid,
        checks=FrozenMap(checks or {}),
    )


def an_instance(model: type) -> Any:
    instances = {
        ErrorDetail: ErrorDetail("6002", "m"),
        RenewalResult: RenewalResult(GenerationStatus.GENERATED),
        CsidGenerationResult: CsidGenerationResult(GenerationStatus.GENERATED),
        CheckOutcome: CheckOutcome.from_raw("SUCCEEDED"),
        ActivityStatus: a_status(),
    }
    return instances[model]


class TestModelShape:
    @pytest.mark.parametrize("model", MODELS)
    def test_models_are_slotted_attrs_classes(self, model: type) -> None:
        assert attrs.has(model)
        assert "__slots__" in vars(model)
        assert not hasattr(an_instance(model), "__dict__")

    @pytest.mark.parametrize("model", MODELS)
    def test_models_are_frozen(self, model: type) -> None:
        instance = an_instance(model)
        first = attrs.fields(model)[0].name
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(instance, first, None)

    @pytest.mark.parametrize("model", MODELS)
    def test_fields_are_snake_case(self, model: type) -> None:
        for field in attrs.fields(model):
            assert re.fullmatch(r"[a-z][a-z0-9_]*", field.name), field.name

    @pytest.mark.parametrize("model", MODELS)
    def test_models_are_hashable(self, model: type) -> None:
        instance = an_instance(model)
        assert hash(instance) == hash(attrs.evolve(instance))

    def test_error_detail_fields(self) -> None:
        detail = ErrorDetail(code="6002", message="m", source="ZATCA", path="Otp")
        assert attrs.astuple(detail) == ("6002", "m", "ZATCA", "Otp")

    def test_error_detail_str_names_code_message_and_path(self) -> None:
        assert str(ErrorDetail("6002", "bad", path="Otp")) == "[6002] bad (at Otp)"
        assert str(ErrorDetail("6002", "bad")) == "[6002] bad"


class TestEnums:
    def test_generation_status_members(self) -> None:
        assert [m.value for m in GenerationStatus] == ["GENERATED", "FAILED"]

    def test_activity_state_members(self) -> None:
        assert [m.value for m in ActivityState] == ["IN_PROGRESS", "SUCCEEDED", "FAILED"]

    def test_the_six_compliance_checks_use_their_wire_names(self) -> None:
        assert [c.value for c in ComplianceCheck] == [
            "StandardTaxInvoice",
            "StandardTaxInvoiceCredit",
            "StandardTaxInvoiceDebit",
            "SimplifiedTaxInvoice",
            "SimplifiedTaxInvoiceCredit",
            "SimplifiedTaxInvoiceDebit",
        ]


class TestCheckOutcome:
    def test_succeeded_passes_with_no_messages(self) -> None:
        assert CheckOutcome.from_raw("SUCCEEDED") == CheckOutcome(
            passed=True, messages=(), raw="SUCCEEDED"
        )

    def test_other_text_fails_with_messages_split_on_commas_and_stripped(self) -> None:
        outcome = CheckOutcome.from_raw(" Invalid hash ,Missing QR,  bad date")
        assert not outcome.passed
        assert outcome.messages == ("Invalid hash", "Missing QR", "bad date")

    def test_raw_text_is_kept_exactly(self) -> None:
        raw = " Invalid hash ,Missing QR"
        assert CheckOutcome.from_raw(raw).raw == raw

    def test_single_message_without_commas(self) -> None:
        assert CheckOutcome.from_raw("FAILED").messages == ("FAILED",)

    def test_empty_pieces_are_dropped(self) -> None:
        assert CheckOutcome.from_raw("a,, ,b,").messages == ("a", "b")

    def test_empty_text_is_not_a_pass(self) -> None:
        assert not CheckOutcome.from_raw("").passed


class TestActivityStatusProperties:
    @pytest.mark.parametrize(
        ("state", "terminal"),
        [
            (ActivityState.IN_PROGRESS, False),
            (ActivityState.SUCCEEDED, True),
            (ActivityState.FAILED, True),
        ],
    )
    def test_is_terminal(self, state: ActivityState, terminal: bool) -> None:
        assert a_status(state).is_terminal is terminal

    @pytest.mark.parametrize(
        ("state", "pcsid", "succeeded"),
        [
            (ActivityState.SUCCEEDED, GenerationStatus.GENERATED, True),
            (ActivityState.SUCCEEDED, None, True),
            (ActivityState.SUCCEEDED, GenerationStatus.FAILED, False),
            (ActivityState.FAILED, GenerationStatus.FAILED, False),
            (ActivityState.FAILED, None, False),
            (ActivityState.IN_PROGRESS, None, False),
        ],
    )
    def test_succeeded(
        self, state: ActivityState, pcsid: GenerationStatus | None, succeeded: bool
    ) -> None:
        assert a_status(state, pcsid).succeeded is succeeded

    def test_failed_checks_in_enum_order(self) -> None:
        checks = {
            ComplianceCheck.SIMPLIFIED_TAX_INVOICE_DEBIT: CheckOutcome.from_raw("x"),
            ComplianceCheck.STANDARD_TAX_INVOICE: CheckOutcome.from_raw("SUCCEEDED"),
            ComplianceCheck.STANDARD_TAX_INVOICE_CREDIT: CheckOutcome.from_raw("y"),
        }
        assert a_status(checks=checks).failed_checks == (
            ComplianceCheck.STANDARD_TAX_INVOICE_CREDIT,
            ComplianceCheck.SIMPLIFIED_TAX_INVOICE_DEBIT,
        )

    def test_checks_mapping_is_read_only(self) -> None:
        status = a_status(checks={ComplianceCheck.STANDARD_TAX_INVOICE: CheckOutcome.from_raw("x")})
        with pytest.raises(TypeError):
            status.checks[ComplianceCheck.STANDARD_TAX_INVOICE] = CheckOutcome.from_raw("y")  # type: ignore[index]

    def test_default_checks_are_empty(self) -> None:
        status = ActivityStatus(
            activity_id="a", activity_type=None, state=ActivityState.IN_PROGRESS
        )
        assert status.checks == {}
        assert status.errors == ()


class TestResults:
    @pytest.mark.parametrize("model", [RenewalResult, CsidGenerationResult])
    def test_ok_means_generated(self, model: Any) -> None:
        assert model(GenerationStatus.GENERATED).ok
        assert not model(GenerationStatus.FAILED).ok

    def test_renewal_result_field_order(self) -> None:
        names = [f.name for f in attrs.fields(RenewalResult) if not f.kw_only]
        assert names == ["status", "device_id", "errors", "activity_id"]

    def test_csid_result_field_order(self) -> None:
        names = [f.name for f in attrs.fields(CsidGenerationResult) if not f.kw_only]
        assert names == ["status", "device_id", "activity_id", "errors"]

    def test_activity_status_field_order(self) -> None:
        assert [f.name for f in attrs.fields(ActivityStatus) if not f.kw_only] == [
            "activity_id",
            "activity_type",
            "state",
            "created_at",
            "updated_at",
            "completed_at",
            "total_count",
            "success_count",
            "failure_count",
            "pcsid_generated",
            "checks",
            "errors",
        ]

    @pytest.mark.parametrize("model", [RenewalResult, CsidGenerationResult, ActivityStatus])
    def test_the_envelope_is_keyword_only_and_outside_equality(self, model: Any) -> None:
        """request_id and status_code come last, keyword-only, and never decide equality."""
        envelope = [f for f in attrs.fields(model) if f.kw_only]
        assert [f.name for f in envelope] == ["request_id", "status_code"]
        assert not any(f.eq for f in envelope)


class TestFrozenMap:
    def test_is_a_read_only_mapping_equal_to_a_dict(self) -> None:
        frozen = FrozenMap({"a": 1})
        assert frozen == {"a": 1}
        assert len(frozen) == 1
        assert list(frozen) == ["a"]
        assert not hasattr(frozen, "__setitem__")

    def test_repr_shows_the_content(self) -> None:
        assert repr(FrozenMap({"a": 1})) == "FrozenMap({'a': 1})"

    def test_hash_depends_on_content(self) -> None:
        assert hash(FrozenMap({"a": 1})) == hash(FrozenMap({"a": 1}))

    def test_not_equal_to_a_non_mapping(self) -> None:
        assert FrozenMap({}) != []


class TestRetryPolicy:
    def test_defaults(self) -> None:
        policy = RetryPolicy()
        assert attrs.asdict(policy) == {
            "max_attempts": 4,
            "initial_delay": 0.5,
            "max_delay": 8.0,
            "max_elapsed": 60.0,
            "max_retry_after": 120.0,
            "retry_unsafe": False,
        }

    def test_is_frozen(self) -> None:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            RetryPolicy().max_attempts = 9  # type: ignore[misc]

    def test_arguments_are_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            RetryPolicy(3)  # type: ignore[call-arg]

    @pytest.mark.parametrize(
        "bad",
        [
            {"max_attempts": 0},
            {"max_attempts": True},
            {"max_attempts": 2.5},
            {"initial_delay": -1},
            {"max_delay": math.nan},
            {"max_elapsed": math.inf},
            {"max_retry_after": -0.1},
            {"initial_delay": "1"},
        ],
    )
    def test_bad_values_raise_value_error(self, bad: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=next(iter(bad))):
            RetryPolicy(**bad)

    def test_no_retries_tries_once(self) -> None:
        assert RetryPolicy.no_retries().max_attempts == 1

    def test_backoff_doubles_up_to_max_delay(self) -> None:
        policy = RetryPolicy(initial_delay=0.5, max_delay=3.0)
        assert [policy.backoff_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]

    def test_every_default_carries_a_comment_giving_its_reason(self) -> None:
        lines = inspect.getsource(RetryPolicy).splitlines()
        fields = [i for i, line in enumerate(lines) if re.match(r"\s+\w+: \w+ = ", line)]
        assert len(fields) == len(attrs.fields(RetryPolicy))
        for index in fields:
            assert lines[index - 1].strip().startswith("#"), lines[index]
