"""The CLI's word on a dead host (one line) and its honest up-front estimate."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import pytest
from _cli_support import VAT, assert_no_secret, device_csv, read_jsonl
from _scripted import quick_retry
from test_breaker import closed_port

from pcsid_async import PcsidClient
from pcsid_async.cli import main
from pcsid_async.cli.batch import ASSUMED_ACTIVITY_WAIT, estimate_seconds
from pcsid_async.cli.fake_server import _print_credentials
from pcsid_async.testing import FakeClearTax


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's clients back off for milliseconds, not for real seconds."""
    quick = functools.partial(PcsidClient, retry=quick_retry())
    monkeypatch.setattr("pcsid_async.cli._common.PcsidClient", quick)


class TestUnreachable:
    def test_a_dead_host_is_said_once_and_the_rest_skipped(
        self, env: None, quick: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = [f"dev-{i:03d}" for i in range(120)]
        out = tmp_path / "results.jsonl"
        url = f"http://127.0.0.1:{closed_port()}/api"
        args = ["renew", str(device_csv(tmp_path, ids)), "--out", str(out), "--base-url", url]
        code = main([*args, "--vat", VAT, "--concurrency", "4"])

        captured = capsys.readouterr()
        assert code == 1
        lines = [line for line in captured.err.splitlines() if "unreachable" in line]
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(f"pcsid-async: stopped sending: the API at {url} is unreachable")
        assert "SKIPPED, not sent, their OTPs unspent" in lines[0]
        records = read_jsonl(out)
        assert sorted(r["device_id"] for r in records) == ids
        skipped = [r for r in records if r["state"] == "SKIPPED"]
        assert len(skipped) >= len(ids) - 8  # at most 5 + 4 - 1 devices tried
        assert {r["attempts"] for r in skipped} == {0}
        assert_no_secret(captured.out, captured.err, out.read_text())


class TestEstimate:
    def test_awaited_activities_are_part_of_the_estimate(self) -> None:
        per_device = 1.0 + ASSUMED_ACTIVITY_WAIT
        assert estimate_seconds(320, rate=None, concurrency=32, await_activities=True) == (
            320 * per_device / 32
        )
        assert estimate_seconds(320, rate=None, concurrency=32) == 10.0

    def test_the_warning_states_its_assumption(
        self, env: None, quick: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # 64 devices at concurrency 32 with an awaited activity: about 22 s, past 15 s left.
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=15)).isoformat()
        ids = [f"dev-{i:03d}" for i in range(64)]
        base = ["renew", str(device_csv(tmp_path, ids)), "--out", str(tmp_path / "r.jsonl")]
        args = [
            *base,
            "--vat",
            VAT,
            "--otp-expires-at",
            expires,
            "--base-url",
            "http://127.0.0.1:1",
        ]
        assert main(args) == 2  # not interactive, no --yes: not started
        err = capsys.readouterr().err
        assert "take about 0:22 (estimate, assuming 1 s per renewal plus 10 s awaiting" in err

        # Renewals only: 2 s, well inside the OTPs' time, so no warning at all.
        assert main([*args, "--no-wait-activities", "--yes"]) == 1
        assert "may not finish" not in capsys.readouterr().err


class TestFakeServerSandbox:
    async def test_sandbox_credentials_print_the_quickstart_export_line(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with FakeClearTax(sandbox_otp=True) as fake:
            fake.add_quickstart_devices()
            _print_credentials(fake, None)
        out = capsys.readouterr().out
        assert "sandbox OTP 123345: accepted once per device" in out
        assert "renew eb645fd8-ee2e-4bdd-82b6-b69c91c9178d" in out
        assert (
            f"  export CLEARTAX_AUTH_TOKEN={fake.token} CLEARTAX_VAT={fake.vat} "
            f"CLEARTAX_BASE_URL={fake.url}\n"
        ) in out

    async def test_without_sandbox_there_is_no_quickstart_line(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with FakeClearTax() as fake:
            fake.add_device()
            _print_credentials(fake, None)
        assert "CLEARTAX_BASE_URL" not in capsys.readouterr().out
