"""The public names, signatures and exception tree are a contract: nothing leaks or vanishes."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

import pcsid_async
from pcsid_async import (
    ActivityFailedError,
    ActivityTimeoutError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    OtpExpiredError,
    PcsidClient,
    PcsidError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    _errors,
)

EXPECTED_NAMES = {
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ActivityFailedError",
    "ActivityState",
    "ActivityStatus",
    "ActivityTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CheckOutcome",
    "ClientClosedError",
    "ComplianceCheck",
    "CsidGenerationResult",
    "ErrorDetail",
    "EventLoopMismatchError",
    "GenerationStatus",
    "InternalServerError",
    "InvalidArgumentError",
    "NotFoundError",
    "OtpExpiredError",
    "PcsidClient",
    "PcsidError",
    "PermissionDeniedError",
    "RateLimitError",
    "RenewalResult",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "__version__",
    # renew_many's request and outcome types (the batch layer).
    "OutcomeState",
    "RenewalOutcome",
    "RenewalRequest",
    # the crash-safe renewal journal (issue 10).
    "InterruptedRenewalError",
    "JournalError",
    "RenewalJournal",
    # issue 14: the rest of onboarding, and the event hooks' events.
    "DeviceDetails",
    "DeviceIdResult",
    "DeviceRegistrationResult",
    "OrganizationDetails",
    "RequestEvent",
    "ResponseEvent",
}


def isort_style_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE constants, then CamelCase, then everything else."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


class TestNamespace:
    def test_all_is_exactly_the_public_names(self) -> None:
        assert set(pcsid_async.__all__) == EXPECTED_NAMES
        assert len(pcsid_async.__all__) == len(EXPECTED_NAMES)

    def test_all_is_sorted(self) -> None:
        assert pcsid_async.__all__ == sorted(pcsid_async.__all__, key=isort_style_key)

    def test_every_public_name_is_importable(self) -> None:
        for name in pcsid_async.__all__:
            assert getattr(pcsid_async, name) is not None

    def test_no_other_public_attribute_leaks(self) -> None:
        public = {
            name
            for name, value in vars(pcsid_async).items()
            if not name.startswith("_") and not inspect.ismodule(value)
        }
        assert public <= EXPECTED_NAMES

    def test_environment_urls(self) -> None:
        assert (
            pcsid_async.SANDBOX_URL == "https://api-sandbox.cleartax.com/middle-east/ksa/einvoicing"
        )
        assert pcsid_async.PRODUCTION_URL == "https://api.cleartax.com/middle-east/ksa/einvoicing"

    def test_version_is_a_version_string(self) -> None:
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", pcsid_async.__version__)

    def test_client_presents_itself_as_public(self) -> None:
        assert PcsidClient.__module__ == "pcsid_async"


def parameters(func: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


class TestSignatures:
    def test_client_constructor(self) -> None:
        params = parameters(PcsidClient.__init__)
        expected: dict[str, Any] = {
            "base_url": pcsid_async.SANDBOX_URL,
            "timeout": 30.0,
            "retry": None,
            "session": None,
            "max_connections": 100,
            "rate_limit": None,
            "user_agent": None,
            "trace_configs": None,
        }
        positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == ["self", "auth_token", "vat"]
        for name, default in expected.items():
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert params[name].default == default, name

    @pytest.mark.parametrize("method", ["renew", "generate_csid"])
    def test_otp_calls(self, method: str) -> None:
        params = parameters(getattr(PcsidClient, method))
        assert [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == [
            "self",
            "device_id",
            "otp",
        ]
        assert params["vat"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["vat"].default is None

    def test_get_status(self) -> None:
        params = parameters(PcsidClient.get_status)
        assert list(params)[:2] == ["self", "activity_id"]
        assert params["vat"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["vat"].default is None

    @pytest.mark.parametrize("method", ["renew", "generate_csid", "get_status", "close"])
    def test_calls_are_coroutines(self, method: str) -> None:
        assert inspect.iscoroutinefunction(getattr(PcsidClient, method))

    def test_retry_policy_is_keyword_only_with_documented_defaults(self) -> None:
        params = parameters(RetryPolicy)
        assert {n: p.default for n, p in params.items()} == {
            "max_attempts": 4,
            "initial_delay": 0.5,
            "max_delay": 8.0,
            "max_elapsed": 60.0,
            "max_retry_after": 120.0,
            "retry_unsafe": False,
        }
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())


TREE = [
    (InvalidArgumentError, PcsidError),
    (InvalidArgumentError, ValueError),
    (ClientClosedError, PcsidError),
    (ClientClosedError, RuntimeError),
    (APIConnectionError, PcsidError),
    (APITimeoutError, APIConnectionError),
    (APIStatusError, PcsidError),
    (BadRequestError, APIStatusError),
    (AuthenticationError, APIStatusError),
    (PermissionDeniedError, APIStatusError),
    (NotFoundError, APIStatusError),
    (RateLimitError, APIStatusError),
    (InternalServerError, APIStatusError),
    (ResponseDecodeError, PcsidError),
    (ActivityTimeoutError, PcsidError),
    (ActivityFailedError, PcsidError),
    (OtpExpiredError, PcsidError),
    (PcsidError, Exception),
]
ERRORS = sorted({child for child, _ in TREE}, key=lambda cls: cls.__name__)


class TestExceptionTree:
    @pytest.mark.parametrize(("child", "parent"), TREE)
    def test_subclass_relation(self, child: type, parent: type) -> None:
        assert issubclass(child, parent)

    def test_status_subclasses_are_siblings(self) -> None:
        statuses = [
            BadRequestError,
            AuthenticationError,
            PermissionDeniedError,
            NotFoundError,
            RateLimitError,
            InternalServerError,
        ]
        for cls in statuses:
            assert cls.__bases__ == (APIStatusError,)

    def test_timeout_is_not_a_status_error(self) -> None:
        assert not issubclass(APITimeoutError, APIStatusError)
        assert not issubclass(ResponseDecodeError, APIStatusError)

    @pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
    def test_tree_in_the_module_docstring_names_every_error(self, cls: type) -> None:
        assert _errors.__doc__ is not None
        assert re.search(rf"\b{cls.__name__}\b", _errors.__doc__)

    @pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
    def test_every_error_says_when_it_is_raised(self, cls: type) -> None:
        assert cls.__doc__
        assert cls.__module__.startswith("pcsid_async")

    def test_connection_error_context(self) -> None:
        error = APITimeoutError(
            "POST /x: no answer", method="POST", path="/x", may_have_reached_server=True
        )
        assert (error.method, error.path, error.may_have_reached_server) == ("POST", "/x", True)

    def test_status_error_context(self) -> None:
        error = RateLimitError(
            "429",
            status_code=429,
            method="GET",
            path="/p",
            body_excerpt="slow down",
            request_id="r1",
            retry_after=3.0,
        )
        assert error.status_code == 429
        assert error.errors == ()
        assert error.body_excerpt == "slow down"
        assert error.request_id == "r1"
        assert error.retry_after == 3.0

    def test_decode_error_context(self) -> None:
        error = ResponseDecodeError("Status: missing", body_excerpt="{}", status_code=200)
        assert error.reason == "Status: missing"
        assert str(error) == "undecodable response: Status: missing"
        assert error.status_code == 200
