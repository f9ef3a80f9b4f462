"""Progress, the summary's tables, and the OTP-expiry estimates."""

from __future__ import annotations

import asyncio
import datetime as dt
import io

import pytest
from _cli_support import (
    VAT,
)

from pcsid_async import (
    ErrorDetail,
    GenerationStatus,
    OutcomeState,
    PcsidError,
    RenewalOutcome,
    RenewalRequest,
    RenewalResult,
)
from pcsid_async._hints import hint_for
from pcsid_async.cli._common import PLAIN_REFRESH, format_duration
from pcsid_async.cli.batch import estimate_seconds, warn_if_late
from pcsid_async.cli.csv_input import DeviceRow
from pcsid_async.cli.progress import Progress, Tally
from pcsid_async.cli.results import outcome_record
from pcsid_async.cli.summary import print_summary


class TestProgressAndEstimates:
    def _tally(self, total: int, states: list[OutcomeState]) -> Tally:
        tally = Tally(total)
        for i, state in enumerate(states):
            outcome = RenewalOutcome(
                RenewalRequest(f"dev-{i}", "OTP-SECRET-0000"), state, None, None, None, 1, 0.1
            )
            tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
        return tally

    def test_a_terminal_gets_a_bar_redrawn_in_place(self) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        stream = Terminal()
        tally = self._tally(10, [OutcomeState.RENEWED] * 4 + [OutcomeState.FAILED])
        progress = Progress(tally, stream, tty=True)
        progress.render()
        progress.finish()
        text = stream.getvalue()
        assert text.startswith("\r[")
        assert "#" in text
        assert "5/10" in text
        assert "ok 4" in text
        assert "failed 1" in text
        assert "ETA" in text
        assert text.endswith("\n")
        assert progress.interval < PLAIN_REFRESH

    def test_without_a_terminal_progress_is_plain_lines(self) -> None:
        stream = io.StringIO()
        progress = Progress(self._tally(3, [OutcomeState.SKIPPED] * 3), stream, tty=False)
        progress.finish()
        assert stream.getvalue() == stream.getvalue().lstrip("\r")
        assert "progress: 3/3" in stream.getvalue()
        assert "skipped 3" in stream.getvalue()
        assert "ETA 0:00" in stream.getvalue()

    async def test_the_bar_redraws_on_its_own_while_waiting(self) -> None:
        stream = io.StringIO()
        progress = Progress(self._tally(3, []), stream, tty=False)
        progress.interval = 0.001
        task = asyncio.create_task(progress.run())
        for _ in range(2000):  # redrawn twice without any outcome: stop waiting
            if stream.getvalue().count("progress: 0/3") >= 2:
                break
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.getvalue().count("progress: 0/3") >= 2

    def test_failures_are_grouped_by_the_providers_codes(self) -> None:
        result = RenewalResult(GenerationStatus.FAILED, errors=(ErrorDetail("8001", "rejected"),))
        outcome = RenewalOutcome(
            RenewalRequest("dev-1", "OTP-SECRET-0000"),
            OutcomeState.FAILED,
            result,
            None,
            PcsidError("renewal answered Status FAILED"),
            1,
            0.1,
        )
        tally = Tally(1)
        tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
        assert tally.by_code == {("8001", "FAILED"): 1}
        assert tally.code_example["8001", "FAILED"] == "FAILED rejected"

    def test_the_error_code_table_counts_each_state_apart(self) -> None:
        # A refused token: a few FAILED, the rest SKIPPED by the breaker, one code.
        result = RenewalResult(GenerationStatus.FAILED, errors=(ErrorDetail("100401", "auth"),))
        tally = Tally(5)
        for i, state in enumerate([OutcomeState.FAILED] * 2 + [OutcomeState.SKIPPED] * 3):
            outcome = RenewalOutcome(
                RenewalRequest(f"dev-{i}", "OTP-SECRET-0000"),
                state,
                result,
                None,
                PcsidError("refused"),
                1,
                0.1,
            )
            tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
        assert tally.by_code == {("100401", "FAILED"): 2, ("100401", "SKIPPED"): 3}
        stream = io.StringIO()
        print_summary(tally, stream, out=None)
        table = [line.split() for line in stream.getvalue().splitlines() if "100401" in line]
        assert [row[:3] for row in table[:2]] == [
            ["100401", "SKIPPED", "3"],
            ["100401", "FAILED", "2"],
        ]

    def test_the_summary_says_what_to_do_about_each_known_error_code(self) -> None:
        tally = Tally(2)
        for i, code in enumerate(("Invalid-OTP", "no-such-code")):
            result = RenewalResult(GenerationStatus.FAILED, errors=(ErrorDetail(code, "no"),))
            outcome = RenewalOutcome(
                RenewalRequest(f"dev-{i}", "OTP-SECRET-0000"),
                OutcomeState.FAILED,
                result,
                None,
                PcsidError("refused"),
                1,
                0.1,
            )
            tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
        stream = io.StringIO()
        print_summary(tally, stream, out=None)
        text = stream.getvalue()
        assert f"Invalid-OTP: {hint_for(['Invalid-OTP'])}" in text
        assert "no-such-code:" not in text
        assert "OTP-SECRET-0000" not in text

    @pytest.mark.parametrize(
        ("activity_id", "expected", "absent"),
        [
            ("act-77", "`pcsid-async status act-77`", "Fatoora portal"),
            (None, "Fatoora portal", "pcsid-async status"),
        ],
    )
    def test_the_unknown_hint_fits_what_is_known(
        self, activity_id: str | None, expected: str, absent: str
    ) -> None:
        result = None
        if activity_id is not None:
            result = RenewalResult(GenerationStatus.GENERATED, activity_id=activity_id)
        outcome = RenewalOutcome(
            RenewalRequest("dev-1", "OTP-SECRET-0000"),
            OutcomeState.UNKNOWN,
            result,
            None,
            PcsidError("answer lost"),
            1,
            0.1,
        )
        tally = Tally(1)
        tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
        stream = io.StringIO()
        print_summary(tally, stream, out=None)
        assert expected in stream.getvalue()
        assert absent not in stream.getvalue()

    def test_a_measured_pace_past_the_earliest_expiry_warns_once(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
        rows = [
            DeviceRow(f"dev-{i}", "OTP-SECRET-0000", None, soon, i + 1, i + 2) for i in range(4)
        ]
        tally = Tally(4)
        for i, elapsed in enumerate((1.0, 100.0, 100.0)):
            outcome = RenewalOutcome(
                RenewalRequest(f"dev-{i}", "OTP-SECRET-0000"),
                OutcomeState.RENEWED,
                RenewalResult(GenerationStatus.GENERATED),
                None,
                None,
                1,
                elapsed,
            )
            tally.add(outcome, outcome_record(outcome, default_vat=VAT, secrets=()))
            warn_if_late(tally, rows, concurrency=1)
            if i == 0:  # 3 left at 1 s each: well before the expiry
                assert capsys.readouterr().err == ""
        err = capsys.readouterr().err
        assert err.count("warning") == 1
        assert "50.5 s per device" in err
        assert "OTP-SECRET" not in err

    def test_the_estimate_is_the_slower_of_rate_and_concurrency(self) -> None:
        assert estimate_seconds(1000, rate=10.0, concurrency=32) == 100.0
        assert estimate_seconds(1000, rate=None, concurrency=10) == 100.0
        assert estimate_seconds(1000, rate=100.0, concurrency=5) == 200.0

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0, "0:00"), (59.6, "1:00"), (3725, "1:02:05"), (float("inf"), "?")],
    )
    def test_durations_read_as_clock_times(self, seconds: float, text: str) -> None:
        assert format_duration(seconds) == text

    def test_short_durations_can_be_precise(self) -> None:
        assert format_duration(4.24, precise=True) == "4.2 s"
