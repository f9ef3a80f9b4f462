"""Pure tests of decoding: (status, headers, body) -> model or typed exception. No I/O."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcsid_async import (
    ActivityState,
    ActivityStatus,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ComplianceCheck,
    CsidGenerationResult,
    ErrorDetail,
    GenerationStatus,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RenewalResult,
    ResponseDecodeError,
)
from pcsid_async._decode import (
    decode_activity,
    decode_csid,
    decode_renewal,
    error_for_status,
    parse_retry_after,
    scrub,
)

CHECKS = [c.value for c in ComplianceCheck]
OTP = "OTP-7f3e91"
TOKEN = "tok-SECRET-5f3c9a1e7b2d4c6e"
SECRETS = (TOKEN, OTP)


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def activity_body(state: str = "SUCCEEDED", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": state,
        "CreatedAt": "2026-11-22T10:15:30.120Z",
        "UpdatedAt": "2026-11-22T10:15:41.906Z",
        "CompletedAt": None if state == "IN_PROGRESS" else "2026-11-22T10:15:41.906Z",
        "RequestMetaInfo": {"TotalCount": 6, "SuccessCount": 5, "FailureCount": 1},
        "ResponseInfo": {
            "ResponseMetaData": {
                "PcsidGenerated": "FAILED",
                **dict.fromkeys(CHECKS, "SUCCEEDED"),
                "StandardTaxInvoiceDebit": "Invalid hash, Missing QR ",
            }
        },
        "ErrorList": [],
    }
    body.update(changes)
    return body


def renew_error(status: int, body: bytes, headers: dict[str, str] | None = None) -> APIStatusError:
    with pytest.raises(APIStatusError) as caught:
        decode_renewal(status, headers or {}, body)
    return caught.value


class TestStatusMapping:
    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, BadRequestError),
            (401, AuthenticationError),
            (403, PermissionDeniedError),
            (404, NotFoundError),
            (429, RateLimitError),
            (500, InternalServerError),
            (501, InternalServerError),
            (502, InternalServerError),
            (503, InternalServerError),
            (504, InternalServerError),
            (599, InternalServerError),
            (301, APIStatusError),
            (302, APIStatusError),
            (304, APIStatusError),
            (307, APIStatusError),
            (409, APIStatusError),
            (422, APIStatusError),
            (418, APIStatusError),
        ],
    )
    @pytest.mark.parametrize(
        "decode",
        [
            decode_renewal,
            decode_csid,
            lambda status, headers, body: decode_activity(status, headers, body, activity_id="a"),
        ],
        ids=["renew", "generate", "status"],
    )
    def test_each_error_status_maps_to_exactly_its_class(
        self, decode: Callable[..., object], status: int, cls: type[APIStatusError]
    ) -> None:
        with pytest.raises(APIStatusError) as caught:
            decode(status, {}, b"")
        assert type(caught.value) is cls
        assert caught.value.status_code == status

    def test_error_knows_method_and_path(self) -> None:
        error = renew_error(400, b"")
        assert (error.method, error.path) == ("POST", "/onboarding/renew-pcsid")
        assert "400 Bad Request for POST /onboarding/renew-pcsid" in str(error)

    def test_status_error_knows_its_activity_path(self) -> None:
        with pytest.raises(NotFoundError) as caught:
            decode_activity(404, {}, b"", activity_id="abc")
        assert caught.value.path == "/onboarding/abc/pcsid-status"
        assert caught.value.method == "GET"

    def test_redirect_message_says_redirects_are_not_followed(self) -> None:
        error = renew_error(302, b"")
        assert "redirects are not followed" in str(error)

    def test_unknown_status_code_still_has_a_message(self) -> None:
        error = renew_error(599, b"")
        assert str(error).startswith("599 ")


class TestErrorBodyShapes:
    def test_object_with_error_list(self) -> None:
        body = encode(
            {
                "Status": "FAILED",
                "ErrorList": [
                    {"ErrorCode": "6002", "ErrorMessage": "Production CSID already generated"},
                    {"ErrorCode": "Invalid-OTP", "ErrorMessage": "expired", "Path": "Otp"},
                ],
            }
        )
        error = renew_error(400, body)
        assert error.errors == (
            ErrorDetail("6002", "Production CSID already generated"),
            ErrorDetail("Invalid-OTP", "expired", None, "Otp"),
        )
        assert error.error_codes == ("6002", "Invalid-OTP")
        assert "[6002] Production CSID already generated" in str(error)
        assert "(at Otp)" in str(error)

    def test_bare_error_object(self) -> None:
        body = encode(
            {
                "ErrorCode": "100401",
                "ErrorMessage": "Authentication Failed",
                "ErrorSource": "CLEARTAX",
            }
        )
        error = renew_error(401, body)
        assert error.errors == (ErrorDetail("100401", "Authentication Failed", "CLEARTAX"),)

    def test_top_level_array(self) -> None:
        body = encode([{"ErrorCode": "8001", "ErrorMessage": "a"}, {"ErrorCode": "8002"}])
        assert renew_error(400, body).error_codes == ("8001", "8002")

    @pytest.mark.parametrize(
        "body",
        [
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b"",
            b'{"ErrorList": [{"ErrorCode": "60',
            b"\xff\xfe not utf-8",
            b"null",
        ],
        ids=["html", "empty", "truncated-json", "binary", "json-null"],
    )
    def test_non_error_bodies_give_no_details_but_an_excerpt(self, body: bytes) -> None:
        error = renew_error(502, body)
        assert error.errors == ()
        assert error.body_excerpt == body.decode("utf-8", errors="replace")

    def test_body_excerpt_is_at_most_500_characters(self) -> None:
        error = renew_error(500, b"<html>" + b"x" * 5000)
        assert error.body_excerpt.startswith("<html>x")
        assert len(error.body_excerpt) == 500

    def test_many_errors_are_summarised(self) -> None:
        body = encode([{"ErrorCode": str(n), "ErrorMessage": "m"} for n in range(5)])
        assert "(+2 more)" in str(renew_error(400, body))

    @pytest.mark.parametrize("header", ["x-request-id", "x-correlation-id", "x-amzn-requestid"])
    def test_request_id_comes_from_the_response_headers(self, header: str) -> None:
        assert renew_error(500, b"", {header: "req-42"}).request_id == "req-42"

    def test_no_request_id_header_means_none(self) -> None:
        assert renew_error(500, b"").request_id is None


class TestRetryAfter:
    NOW = dt.datetime(2026, 11, 22, 10, 0, 0, tzinfo=dt.timezone.utc)

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("5", 5.0),
            (" 0.25 ", 0.25),
            ("0", 0.0),
            ("-3", 0.0),
            ("Sun, 22 Nov 2026 10:00:30 GMT", 30.0),
            ("Sun, 22 Nov 2026 09:59:00 GMT", 0.0),
            ("Sun, 22 Nov 2026 10:00:30 -0000", 30.0),
        ],
    )
    def test_seconds_or_http_date(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value, now=self.NOW) == seconds

    @pytest.mark.parametrize(
        "value", [None, "", "soon", "inf", "nan", "Sun, 99 Foo", "\u0661\u0662", "1e999"]
    )
    def test_absent_or_unreadable_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now=self.NOW) is None

    def test_rate_limit_error_carries_retry_after(self) -> None:
        error = renew_error(429, b"", {"Retry-After": "7"})
        assert isinstance(error, RateLimitError)
        assert error.retry_after == 7.0

    def test_error_without_retry_after_has_none(self) -> None:
        assert renew_error(429, b"").retry_after is None


class TestSuccessBodies:
    def test_renewal_sample_from_the_docs(self) -> None:
        body = encode(
            {
                "Status": "GENERATED",
                "DeviceId": "eb645fd8-ee2e-4bdd-82b6-b69c91c9178d",
                "ErrorList": [],
            }
        )
        assert decode_renewal(200, {}, body) == RenewalResult(
            status=GenerationStatus.GENERATED, device_id="eb645fd8-ee2e-4bdd-82b6-b69c91c9178d"
        )

    def test_failed_renewal_in_a_200_is_a_result_not_an_error(self) -> None:
        body = encode({"Status": "FAILED", "ErrorList": [{"ErrorCode": "8001"}]})
        result = decode_renewal(200, {}, body)
        assert result.status is GenerationStatus.FAILED
        assert result.device_id is None
        assert result.errors == (ErrorDetail("8001"),)

    def test_csid_generation(self) -> None:
        body = encode(
            {
                "Status": "GENERATED",
                "DeviceId": "d",
                "PcsidGenerationActivityId": "628f37b61ed71a6638b848e4",
            }
        )
        assert decode_csid(200, {}, body) == CsidGenerationResult(
            status=GenerationStatus.GENERATED, device_id="d", activity_id="628f37b61ed71a6638b848e4"
        )

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"<html>oops</html>", "body is not JSON"),
            (b"", "body is empty"),
            (b"  \n", "body is empty"),
            (b"[1, 2]", "expected a JSON object, got an array"),
            (b'"GENERATED"', "expected a JSON object, got a string"),
            (b"{}", "Status: required field missing"),
        ],
    )
    @pytest.mark.parametrize("decode", [decode_renewal, decode_csid])
    def test_undecodable_success_body_is_a_decode_error(
        self, decode: Callable[..., object], body: bytes, reason: str
    ) -> None:
        with pytest.raises(ResponseDecodeError) as caught:
            decode(201, {}, body)
        assert caught.value.reason == reason
        assert caught.value.status_code == 201
        assert caught.value.body_excerpt == body.decode()

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"<html>oops</html>", "body is not JSON"),
            (b"", "body is empty"),
            (b"[]", "expected a JSON object, got an array"),
            (b"{}", "Status: required field missing"),
            (encode(activity_body(state="WAITING")), "Status: 'WAITING' is not one of"),
        ],
    )
    def test_undecodable_status_body_is_a_decode_error(self, body: bytes, reason: str) -> None:
        with pytest.raises(ResponseDecodeError) as caught:
            decode_activity(200, {}, body, activity_id="a")
        assert caught.value.reason.startswith(reason)

    def test_in_progress_status(self) -> None:
        status = decode_activity(200, {}, encode(activity_body("IN_PROGRESS")), activity_id="a")
        assert status.state is ActivityState.IN_PROGRESS
        assert not status.is_terminal

    @pytest.mark.parametrize(
        "body",
        [
            json.dumps(activity_body()).encode("utf-16"),  # JSON's other encodings, by BOM
            b"\xef\xbb\xbf" + encode(activity_body()),  # a UTF-8 byte order mark
            encode(activity_body(CreatedAt=1795342530120)),  # epoch milliseconds
            encode(activity_body(RequestMetaInfo={"TotalCount": "6"})),  # a numeric string
        ],
    )
    def test_unusual_but_valid_bodies_take_the_long_road_to_the_same_model(
        self, body: bytes
    ) -> None:
        status = decode_activity(200, {}, body, activity_id="a")
        assert status.state is ActivityState.SUCCEEDED
        assert status.failed_checks == (ComplianceCheck.STANDARD_TAX_INVOICE_DEBIT,)
        assert status.created_at == dt.datetime(2026, 11, 22, 10, 15, 30, 120000, dt.timezone.utc)


class TestFailedActivityQuirk:
    """A FAILED activity arrives as HTTP 500 with a normal activity body."""

    def test_500_with_an_activity_body_is_the_failed_status(self) -> None:
        status = decode_activity(500, {}, encode(activity_body("FAILED")), activity_id="a1")
        assert isinstance(status, ActivityStatus)
        assert status.state is ActivityState.FAILED
        assert status.activity_id == "a1"
        assert status.pcsid_generated is GenerationStatus.FAILED
        outcome = status.checks[ComplianceCheck.STANDARD_TAX_INVOICE_DEBIT]
        assert outcome.messages == ("Invalid hash", "Missing QR")
        assert status.failed_checks == (ComplianceCheck.STANDARD_TAX_INVOICE_DEBIT,)

    @pytest.mark.parametrize(
        "body",
        [
            b"<html><h1>500 Internal Server Error</h1></html>",
            b"",
            encode({"ErrorCode": "4040", "ErrorMessage": "Unhandled exception"}),
            encode({"Status": "FAILED", "ErrorList": []}),
            encode({"ActivityType": "ZATCA_COMPLIANCE_INVOICE"}),
            encode(activity_body("EXPLODED")),
            encode(activity_body("FAILED", CreatedAt="not a time")),
            encode([activity_body("FAILED")]),
        ],
        ids=[
            "html",
            "empty",
            "bare-error",
            "no-activity-type",
            "no-status",
            "unknown-status",
            "undecodable-activity",
            "array",
        ],
    )
    def test_500_without_an_activity_body_is_an_internal_server_error(self, body: bytes) -> None:
        with pytest.raises(InternalServerError) as caught:
            decode_activity(500, {}, body, activity_id="a")
        assert caught.value.status_code == 500

    def test_500_error_object_keeps_its_details(self) -> None:
        body = encode({"ErrorCode": "4040", "ErrorMessage": "Unhandled exception"})
        with pytest.raises(InternalServerError) as caught:
            decode_activity(500, {}, body, activity_id="a")
        assert caught.value.error_codes == ("4040",)

    @pytest.mark.parametrize("status", [502, 503])
    def test_other_5xx_with_an_activity_body_is_still_an_error(self, status: int) -> None:
        with pytest.raises(InternalServerError):
            decode_activity(status, {}, encode(activity_body("FAILED")), activity_id="a")

    def test_failed_state_in_a_200_is_also_a_status(self) -> None:
        status = decode_activity(200, {}, encode(activity_body("FAILED")), activity_id="a")
        assert status.state is ActivityState.FAILED


class TestSecretScrubbing:
    """The call's token and OTP never reach an exception, its excerpt or a result."""

    def leaky_errors(self) -> list[dict[str, str]]:
        return [
            {
                "ErrorCode": f"bad-{OTP}",
                "ErrorMessage": f"OTP {OTP} for token {TOKEN} is invalid",
                "ErrorSource": f"src {TOKEN}",
                "Path": f"Otp={OTP}",
            }
        ]

    def assert_clean(self, *texts: str) -> None:
        for text in texts:
            for secret in SECRETS:
                assert secret not in text

    def test_error_details_excerpt_and_message_are_scrubbed(self) -> None:
        body = encode({"Status": "FAILED", "ErrorList": self.leaky_errors()})
        with pytest.raises(BadRequestError) as caught:
            decode_renewal(400, {}, body, secrets=SECRETS)
        error = caught.value
        self.assert_clean(str(error), repr(error), error.body_excerpt, repr(error.errors))
        assert "[redacted]" in error.errors[0].message

    def test_errors_inside_a_success_result_are_scrubbed(self) -> None:
        body = encode({"Status": "FAILED", "ErrorList": self.leaky_errors()})
        for decode in (decode_renewal, decode_csid):
            result = decode(200, {}, body, secrets=SECRETS)
            self.assert_clean(repr(result), str(result.errors[0]))

    def test_decode_error_reason_and_excerpt_are_scrubbed(self) -> None:
        body = encode({"Status": OTP, "Echo": TOKEN})
        with pytest.raises(ResponseDecodeError) as caught:
            decode_renewal(200, {}, body, secrets=SECRETS)
        error = caught.value
        self.assert_clean(str(error), repr(error), error.reason, error.body_excerpt)
        assert error.reason.startswith("Status:")

    def test_non_json_success_body_excerpt_is_scrubbed(self) -> None:
        with pytest.raises(ResponseDecodeError) as caught:
            decode_renewal(200, {}, f"<p>{TOKEN} {OTP}</p>".encode(), secrets=SECRETS)
        self.assert_clean(caught.value.body_excerpt)

    def test_secret_straddling_the_excerpt_limit_is_still_scrubbed(self) -> None:
        body = b"x" * 495 + TOKEN.encode() + b"y" * 100
        self.assert_clean(renew_error(500, body).body_excerpt)
        with pytest.raises(InternalServerError) as caught:
            decode_renewal(500, {}, body, secrets=SECRETS)
        assert TOKEN[:5] not in caught.value.body_excerpt

    def test_tiny_secrets_are_not_scrubbed(self) -> None:
        """Replacing a 1-3 character 'secret' everywhere would mangle text, protecting nothing."""
        assert scrub("a 12 b", ["12"]) == "a 12 b"
        assert scrub("a 1234 b", ["1234"]) == "a [redacted] b"


# --- Hypothesis: any body yields a model or ResponseDecodeError, never anything else ----------

WIRE_KEYS = [
    "Status",
    "DeviceId",
    "ErrorList",
    "ErrorCode",
    "ErrorMessage",
    "ActivityType",
    "CreatedAt",
    "RequestMetaInfo",
    "ResponseInfo",
    "ResponseMetaData",
    "TotalCount",
    "PcsidGenerated",
    "PcsidGenerationActivityId",
    *CHECKS,
]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(WIRE_KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)

MISSING = object()


def near(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value; sometimes null, a random JSON value, or the key left out."""
    return st.one_of(valid, valid, valid, st.none(), json_values, st.just(MISSING))


def shape(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with these keys (each possibly missing) plus, sometimes, unknown keys."""
    return st.tuples(
        st.fixed_dictionaries(fields), st.dictionaries(st.just("XUnknown"), json_values)
    ).map(lambda parts: {k: v for k, v in {**parts[0], **parts[1]}.items() if v is not MISSING})


timestamps = st.one_of(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.timezone.utc),
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.integers(946684800, 4102444800),
    st.integers(946684800000, 4102444800000),
    st.text(max_size=30),
)
counts = st.integers(0, 6)
checks = shape({name: near(st.sampled_from(["SUCCEEDED", "bad qr, bad hash"])) for name in CHECKS})
meta = st.tuples(
    shape({"PcsidGenerated": near(st.sampled_from(["GENERATED", "FAILED"]))}), checks
).map(lambda parts: {**parts[0], **parts[1]})
count_fields = {
    "TotalCount": near(counts),
    "SuccessCount": near(counts),
    "FailureCount": near(counts),
}
error_details = st.lists(
    shape(
        {
            "ErrorCode": near(st.sampled_from(["6002", "Invalid-OTP", "100401"])),
            "ErrorMessage": near(st.text(max_size=20)),
            "ErrorSource": near(st.sampled_from(["ZATCA", "CLEARTAX"])),
            "Path": near(st.sampled_from(["Otp", "DeviceId"])),
        }
    ),
    max_size=3,
)
activity_bodies = shape(
    {
        "ActivityType": near(st.just("ZATCA_COMPLIANCE_INVOICE")),
        "Status": near(st.sampled_from(["IN_PROGRESS", "SUCCEEDED", "FAILED"])),
        "CreatedAt": near(timestamps),
        "UpdatedAt": near(timestamps),
        "CompletedAt": near(timestamps),
        "RequestMetaInfo": near(shape(count_fields)),
        "ResponseInfo": near(shape({"ResponseMetaData": near(meta), **count_fields})),
        "ResponseMetaData": near(meta),
        "TotalCount": near(counts),
        "ErrorList": near(error_details),
    }
)
onboarding_bodies = shape(
    {
        "Status": near(st.sampled_from(["GENERATED", "FAILED"])),
        "DeviceId": near(st.uuids().map(str)),
        "PcsidGenerationActivityId": near(st.from_regex(r"\A[0-9a-f]{24}\Z")),
        "ErrorList": near(error_details),
    }
)

PROPERTY = settings(max_examples=150, deadline=None)


def decodes_or_refuses(decode: Callable[[], object], model: type) -> object | None:
    """Return the decoded model, or None when decoding raised ResponseDecodeError (only)."""
    reason = None
    try:
        result = decode()
    except ResponseDecodeError as exc:
        result, reason = None, exc.reason
    if result is None:
        assert reason, "a decode error must say why"
        return None
    assert isinstance(result, model)
    return result


class TestDecoderProperties:
    @PROPERTY
    @given(json_values)
    def test_status_decoder_any_json_is_a_model_or_decode_error(self, value: object) -> None:
        body = encode(value)
        decodes_or_refuses(lambda: decode_activity(200, {}, body, activity_id="a"), ActivityStatus)

    @PROPERTY
    @given(json_values)
    def test_renew_decoder_any_json_is_a_model_or_decode_error(self, value: object) -> None:
        body = encode(value)
        decodes_or_refuses(lambda: decode_renewal(200, {}, body), RenewalResult)
        decodes_or_refuses(lambda: decode_csid(200, {}, body), CsidGenerationResult)

    @PROPERTY
    @given(st.binary(max_size=200))
    def test_any_bytes_are_a_model_or_decode_error(self, body: bytes) -> None:
        decodes_or_refuses(lambda: decode_activity(200, {}, body, activity_id="a"), ActivityStatus)
        decodes_or_refuses(lambda: decode_renewal(200, {}, body), RenewalResult)

    @PROPERTY
    @given(activity_bodies)
    def test_near_miss_activity_bodies_are_a_model_or_decode_error(
        self, body: dict[str, Any]
    ) -> None:
        status = decodes_or_refuses(
            lambda: decode_activity(200, {}, encode(body), activity_id="a"), ActivityStatus
        )
        if body.get("Status") not in ("IN_PROGRESS", "SUCCEEDED", "FAILED"):
            assert status is None, "a missing or unknown Status must never decode"
        if isinstance(status, ActivityStatus):
            assert status.state.value == body["Status"]
            assert status.activity_id == "a"
            for moment in (status.created_at, status.updated_at, status.completed_at):
                assert moment is None or moment.tzinfo is dt.timezone.utc

    @PROPERTY
    @given(onboarding_bodies)
    def test_near_miss_onboarding_bodies_are_a_model_or_decode_error(
        self, body: dict[str, Any]
    ) -> None:
        result = decodes_or_refuses(lambda: decode_renewal(200, {}, encode(body)), RenewalResult)
        if body.get("Status") not in ("GENERATED", "FAILED"):
            assert result is None
        decodes_or_refuses(lambda: decode_csid(200, {}, encode(body)), CsidGenerationResult)

    @PROPERTY
    @given(st.one_of(activity_bodies, json_values))
    def test_any_500_body_is_a_status_or_an_internal_server_error(self, value: object) -> None:
        try:
            status = decode_activity(500, {}, encode(value), activity_id="a")
        except InternalServerError:
            return
        assert isinstance(status, ActivityStatus)

    @PROPERTY
    @given(
        st.sampled_from([301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504]),
        st.one_of(json_values.map(encode), st.binary(max_size=600)),
    )
    def test_any_error_answer_is_a_status_error_with_a_bounded_excerpt(
        self, status: int, body: bytes
    ) -> None:
        error = error_for_status(status, {}, body, method="POST", path="/p", secrets=SECRETS)
        assert isinstance(error, APIStatusError)
        assert error.status_code == status
        assert len(error.body_excerpt) <= 500
