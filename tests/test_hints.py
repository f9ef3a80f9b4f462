"""The error-code catalogue: a hint per known code, none for unknown ones, on real answers."""

from __future__ import annotations

import pytest
from _scripted import TOKEN
from conftest import ClientFactory

from pcsid_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ErrorDetail,
    InternalServerError,
    NotFoundError,
    PcsidClient,
    PermissionDeniedError,
)
from pcsid_async._hints import CODE_HINTS, STATUS_HINTS, hint_for
from pcsid_async.testing import FakeClearTax

KNOWN_CODES = ("5002", "4040", "6002", "6003", "8001", "100401", "Invalid-OTP")


def status_error(status: int, *codes: str) -> APIStatusError:
    return APIStatusError(
        "boom",
        status_code=status,
        method="POST",
        path="/onboarding/renew-pcsid",
        errors=[ErrorDetail(code=c, message="whatever") for c in codes],
    )


class TestCatalogue:
    @pytest.mark.parametrize("code", KNOWN_CODES)
    def test_every_known_code_has_a_short_hint(self, code: str) -> None:
        hint = hint_for([code])
        assert hint is not None
        assert hint == CODE_HINTS[code]
        assert 20 < len(hint) < 300

    def test_the_catalogue_holds_exactly_the_known_codes(self) -> None:
        assert set(CODE_HINTS) == set(KNOWN_CODES)

    @pytest.mark.parametrize(
        ("code", "words"),
        [
            ("Invalid-OTP", ("same environment", "within the last hour", "works once")),
            ("100401", ("token",)),
            ("5002", ("Admin", "VAT")),
            ("6002", ("already generated", "renew")),
            ("6003", ("device id", "VAT")),
            ("8001", ("ZATCA",)),
            ("4040", ("request id",)),
        ],
    )
    def test_each_hint_says_what_to_check(self, code: str, words: tuple[str, ...]) -> None:
        hint = hint_for([code])
        assert hint is not None
        for word in words:
            assert word in hint

    @pytest.mark.parametrize("code", ["9999", "", "invalid-otp", " 6002", "OTP"])
    def test_unknown_codes_have_no_hint(self, code: str) -> None:
        """Codes match exactly: an unknown or differently spelt code gives no guess."""
        assert hint_for([code]) is None
        assert hint_for([code], status_code=400) is None

    def test_no_codes_and_no_status_give_none(self) -> None:
        assert hint_for([]) is None

    @pytest.mark.parametrize("status", [401, 403, 404])
    def test_a_known_status_without_known_codes_falls_back_to_its_hint(self, status: int) -> None:
        assert hint_for([], status_code=status) == STATUS_HINTS[status]
        assert hint_for(["9999"], status_code=status) == STATUS_HINTS[status]

    def test_a_known_code_wins_over_the_status(self) -> None:
        assert hint_for(["Invalid-OTP"], status_code=403) == CODE_HINTS["Invalid-OTP"]

    def test_several_codes_give_their_distinct_hints_in_order(self) -> None:
        hint = hint_for(["6003", "9999", "Invalid-OTP", "6003"])
        assert hint == f"{CODE_HINTS['6003']} {CODE_HINTS['Invalid-OTP']}"

    def test_codes_sharing_a_hint_give_it_once(self) -> None:
        assert hint_for(["100401"], status_code=401) == hint_for(["100401", "100401"])


class TestErrorHint:
    def test_the_hint_comes_from_the_codes_not_the_message(self) -> None:
        error = APIStatusError(
            "Invalid-OTP 100401 6002",
            status_code=400,
            method="POST",
            path="/x",
            errors=[ErrorDetail(code="6003", message="Invalid-OTP")],
        )
        assert error.hint == CODE_HINTS["6003"]

    def test_an_error_without_known_codes_or_status_has_no_hint(self) -> None:
        assert status_error(400, "9999").hint is None
        assert status_error(409).hint is None

    def test_a_subclass_has_the_hint_too(self) -> None:
        error = PermissionDeniedError("no", status_code=403, method="GET", path="/x")
        assert error.hint == STATUS_HINTS[403]


class TestOnRealAnswers:
    """The fake answers with the provider's codes; the client's errors carry their hints."""

    async def test_a_spent_otp(self, fake: FakeClearTax, client: PcsidClient) -> None:
        device = fake.add_device()
        otp = fake.issue_otp()
        await client.renew(device, otp)
        with pytest.raises(BadRequestError) as caught:
            await client.renew(device, otp)
        assert caught.value.error_codes == ("Invalid-OTP",)
        assert caught.value.hint == CODE_HINTS["Invalid-OTP"]
        assert otp not in (caught.value.hint or "")

    async def test_a_bad_token(self, fake: FakeClearTax, make_client: ClientFactory) -> None:
        client = make_client(fake.url, auth_token="tok-wrong-0000")
        with pytest.raises(AuthenticationError) as caught:
            await client.renew(fake.add_device(), fake.issue_otp())
        assert caught.value.hint == CODE_HINTS["100401"]
        assert TOKEN not in (caught.value.hint or "")

    async def test_a_vat_the_user_is_not_admin_for(
        self, fake: FakeClearTax, make_client: ClientFactory
    ) -> None:
        client = make_client(fake.url)
        with pytest.raises(PermissionDeniedError) as caught:
            await client.get_status("act-1", vat="399999999999993")
        assert caught.value.hint == CODE_HINTS["5002"]

    async def test_an_unknown_device(self, fake: FakeClearTax, make_client: ClientFactory) -> None:
        client = make_client(fake.url)
        with pytest.raises(BadRequestError) as caught:
            await client.renew("no-such-device", fake.issue_otp())
        assert caught.value.hint == CODE_HINTS["6003"]

    async def test_a_server_error(self, fake: FakeClearTax, make_client: ClientFactory) -> None:
        client = make_client(fake.url)
        fake.inject("renew", "server_error")
        with pytest.raises(InternalServerError) as caught:
            await client.renew(fake.add_device(), fake.issue_otp())
        assert caught.value.hint == CODE_HINTS["4040"]

    async def test_a_wrong_base_url(self, fake: FakeClearTax, make_client: ClientFactory) -> None:
        client = make_client(f"{fake.url}/wrong-prefix")
        with pytest.raises(NotFoundError) as caught:
            await client.renew(fake.add_device(), fake.issue_otp())
        assert caught.value.hint is not None
