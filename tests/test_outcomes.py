"""The batch's data (``_outcomes``): requests mask their OTP, outcomes say what happened."""

from __future__ import annotations

import pytest

from pcsid_async import OutcomeState, PcsidError, RenewalOutcome, RenewalRequest


class TestModels:
    def test_request_repr_masks_the_otp(self) -> None:
        request = RenewalRequest("dev-1", "otp-secret-9931", vat="3001")
        assert "otp-secret-9931" not in repr(request)
        assert "dev-1" in repr(request)
        assert "3001" in repr(request)

    def test_request_is_frozen_and_takes_positional_device_and_otp(self) -> None:
        request = RenewalRequest("dev-1", "otp-secret-9931")
        assert (request.device_id, request.otp, request.vat, request.otp_expires_at) == (
            "dev-1",
            "otp-secret-9931",
            None,
            None,
        )
        with pytest.raises(AttributeError):
            request.otp = "x"  # type: ignore[misc]

    def test_outcome_repr_shows_no_otp_and_ok_follows_state(self) -> None:
        request = RenewalRequest("dev-1", "otp-secret-9931")
        outcome = RenewalOutcome(
            request, OutcomeState.FAILED, None, None, PcsidError("no luck"), attempts=1, elapsed=0.5
        )
        assert "otp-secret-9931" not in repr(outcome)
        assert "FAILED" in repr(outcome)
        assert outcome.device_id == "dev-1"
        assert not outcome.ok
        assert outcome.error_codes == ()
        renewed = RenewalOutcome(request, OutcomeState.RENEWED, None, None, None, 1, 0.1)
        assert renewed.ok
        assert "error" not in repr(renewed)
