"""Pure tests of wire timestamps (pcsid_async._timestamps): ISO-8601 and epoch forms."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcsid_async._timestamps import parse_timestamp

UTC = dt.timezone.utc


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
