"""The pcsid-async command line: renew from a CSV, status, demo, fake-server, exit codes.

Most tests call ``main()`` in-process with the fake server running on its own loop in a
background thread (``main`` runs ``asyncio.run`` itself); a few run the real thing with
``python -m pcsid_async`` in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pcsid_async import (
    PRODUCTION_URL,
    SANDBOX_URL,
    ActivityState,
    ActivityStatus,
    ErrorDetail,
    GenerationStatus,
    OutcomeState,
    PcsidError,
    RenewalOutcome,
    RenewalRequest,
    RenewalResult,
    __version__,
)
from pcsid_async.cli import main
from pcsid_async.cli._common import PLAIN_REFRESH, _base_url, format_duration
from pcsid_async.cli.batch import estimate_seconds, warn_if_late
from pcsid_async.cli.csv_input import DeviceRow, read_devices
from pcsid_async.cli.demo import demo_verdict
from pcsid_async.cli.fake_server import _print_credentials
from pcsid_async.cli.progress import Progress, Tally
from pcsid_async.cli.results import outcome_record
from pcsid_async.cli.status import print_status
from pcsid_async.cli.summary import print_summary
from pcsid_async.testing import FakeClearTax

TOKEN = "cli-token-SECRET-7c3e91"
VAT = "300000000000003"
_T = TypeVar("_T")


class ThreadedFake:
    """A FakeClearTax serving from its own event loop in a background thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = self.run(self._start(kwargs))

    async def _start(self, kwargs: dict[str, Any]) -> FakeClearTax:
        fake = FakeClearTax(token=TOKEN, vats=(VAT,), **kwargs)
        await fake.start()
        return fake

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        async def on_loop() -> _T:
            return fn(*args, **kwargs)

        return self.run(on_loop())

    @property
    def url(self) -> str:
        return self.fake.url

    def close(self) -> None:
        self.run(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def server() -> Iterator[ThreadedFake]:
    threaded = ThreadedFake(any_otp=True)
    try:
        yield threaded
    finally:
        threaded.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARTAX_AUTH_TOKEN", TOKEN)
    monkeypatch.delenv("CLEARTAX_VAT", raising=False)


def otp_of(i: int) -> str:
    return f"OTP-SECRET-{i:04d}"


def write_csv(path: Path, rows: list[str], header: str = "device_id,otp") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def add_devices(server: ThreadedFake, n: int, **kwargs: Any) -> list[str]:
    return server.call(server.fake.add_devices, n, **kwargs)


def device_csv(tmp_path: Path, ids: list[str], name: str = "devices.csv") -> Path:
    return write_csv(tmp_path / name, [f"{d},{otp_of(i)}" for i, d in enumerate(ids)])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def renew_args(server: ThreadedFake, csv_path: Path, out: Path) -> list[str]:
    return ["renew", str(csv_path), "--out", str(out), "--base-url", server.url, "--vat", VAT]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert "OTP-SECRET" not in text


class TestRenewCommand:
    def test_every_device_renewed_exits_0_and_writes_one_line_per_device(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 12)
        out = tmp_path / "results.jsonl"
        code = main([*renew_args(server, device_csv(tmp_path, ids), out), "--concurrency", "4"])
        captured = capsys.readouterr()
        assert code == 0
        records = read_jsonl(out)
        assert sorted(r["device_id"] for r in records) == sorted(ids)
        for record in records:
            assert record["ok"] is True
            assert record["state"] == "RENEWED"
            assert record["error_type"] is None
            assert record["error_message"] is None
            assert record["error_codes"] == []
            assert record["pcsid_generated"] == "GENERATED"
            assert record["failed_checks"] == []
            assert record["attempts"] == 1
            assert record["elapsed_s"] >= 0
            assert record["vat"] == VAT
        assert "Renewed 12 of 12 devices" in captured.out
        assert "RENEWED" in captured.out
        assert "progress: 12/12" in captured.err  # not a terminal: plain lines on stderr
        assert_no_secret(captured.out, captured.err, out.read_text())

    def test_failures_exit_1_and_are_grouped_by_code_and_failed_check(
        self, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        server = ThreadedFake(any_otp=True, renew_starts_activity=True, activity_polls=1)
        try:
            ok = add_devices(server, 3)
            rejected = add_devices(server, 2, renew_error=("8001", "ZATCA says no"))
            checks = add_devices(
                server, 1, failing_checks={"SimplifiedTaxInvoice": "BR-KSA-01: no"}
            )
            out = tmp_path / "results.jsonl"
            csv_path = device_csv(tmp_path, ok + rejected + checks)
            code = main(renew_args(server, csv_path, out))
        finally:
            server.close()
        captured = capsys.readouterr()
        assert code == 1
        records = {r["device_id"]: r for r in read_jsonl(out)}
        assert len(records) == 6
        for device in rejected:
            assert records[device]["state"] == "FAILED"
            assert records[device]["error_type"] == "BadRequestError"
            assert records[device]["error_codes"] == ["8001"]
            assert "ZATCA says no" in records[device]["error_message"]
        failed_activity = records[checks[0]]
        assert failed_activity["state"] == "FAILED"
        assert failed_activity["error_type"] == "ActivityFailedError"
        assert failed_activity["failed_checks"] == ["SimplifiedTaxInvoice"]
        assert failed_activity["activity_state"] == "FAILED"
        assert all(records[d]["activity_state"] == "SUCCEEDED" for d in ok)
        assert "8001" in captured.out
        assert "SimplifiedTaxInvoice" in captured.out
        assert "ActivityFailedError" in captured.out
        assert_no_secret(captured.out, captured.err, out.read_text())

    def test_resume_skips_devices_already_ok_and_sends_only_the_rest(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 5)
        server.call(server.fake.inject, "renew", "server_error", status=500)
        out = tmp_path / "results.jsonl"
        csv_path = device_csv(tmp_path, ids)
        args = [*renew_args(server, csv_path, out), "--concurrency", "1"]
        assert main(args) == 1
        first = read_jsonl(out)
        failed = [r["device_id"] for r in first if not r["ok"]]
        assert len(failed) == 1
        before = server.fake.count("renew")

        assert main([*args, "--resume"]) == 0
        assert server.fake.count("renew") == before + 1
        records = read_jsonl(out)
        assert len(records) == 6
        assert records[-1]["device_id"] == failed[0]
        assert records[-1]["ok"] is True
        captured = capsys.readouterr()
        assert "4 already renewed" in captured.out

        assert main([*args, "--resume"]) == 0
        assert "Nothing to do" in capsys.readouterr().out
        assert server.fake.count("renew") == before + 1

    def test_resume_survives_a_line_cut_short_by_a_crash(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 2)
        out = tmp_path / "results.jsonl"
        done = json.dumps({"device_id": ids[0], "ok": True})
        out.write_text(f'\n{done}\n\n{{"device_id": "x", "o')
        assert main([*renew_args(server, device_csv(tmp_path, ids), out), "--resume"]) == 0
        assert "ignored 1 unreadable line" in capsys.readouterr().err
        lines = out.read_text().splitlines()
        assert json.loads(lines[-1])["device_id"] == ids[1]
        assert server.fake.count("renew") == 1

    def test_existing_results_are_not_overwritten_without_resume(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 1)
        out = tmp_path / "results.jsonl"
        out.write_text('{"device_id": "earlier", "ok": false}\n')
        assert main(renew_args(server, device_csv(tmp_path, ids), out)) == 2
        assert "--resume" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_resume_without_a_results_file_starts_from_scratch(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 2)
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
        out = tmp_path / "results.jsonl"
        args = [*renew_args(server, device_csv(tmp_path, ids), out), "--resume"]
        assert main([*args, "--otp-expires-at", expires]) == 0  # fits: no warning
        assert "warning" not in capsys.readouterr().err
        assert len(read_jsonl(out)) == 2

    def test_a_results_file_that_cannot_be_opened_is_a_usage_error(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = device_csv(tmp_path, add_devices(server, 1))
        assert main(renew_args(server, csv_path, tmp_path / "no-such-dir" / "r.jsonl")) == 2
        assert "cannot open the results file" in capsys.readouterr().err
        assert main([*renew_args(server, csv_path, tmp_path), "--resume"]) == 2
        assert "cannot read the results file" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_vat_may_come_from_the_environment_or_every_row(
        self,
        server: ThreadedFake,
        env: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        ids = add_devices(server, 2)
        base = ["--base-url", server.url]
        monkeypatch.setenv("CLEARTAX_VAT", VAT)
        first = ["renew", str(device_csv(tmp_path, ids[:1])), "--out", str(tmp_path / "a.jsonl")]
        assert main([*first, *base]) == 0
        monkeypatch.delenv("CLEARTAX_VAT")
        per_row = write_csv(
            tmp_path / "vat.csv", [f"{ids[1]},{otp_of(1)},{VAT}"], header="device_id,otp,vat"
        )
        assert main(["renew", str(per_row), "--out", str(tmp_path / "b.jsonl"), *base]) == 0
        assert read_jsonl(tmp_path / "b.jsonl")[0]["vat"] == VAT
        assert main(["renew", str(device_csv(tmp_path, ids)), "--out", "c.jsonl", *base]) == 2
        assert "no VAT" in capsys.readouterr().err

    def test_a_missing_token_is_a_usage_error(
        self,
        server: ThreadedFake,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.delenv("CLEARTAX_AUTH_TOKEN", raising=False)
        ids = add_devices(server, 1)
        assert main(renew_args(server, device_csv(tmp_path, ids), tmp_path / "r.jsonl")) == 2
        assert "CLEARTAX_AUTH_TOKEN" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_a_refused_base_url_is_a_usage_error(
        self, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = device_csv(tmp_path, ["dev-1"])
        args = ["renew", str(csv_path), "--out", str(tmp_path / "r.jsonl"), "--vat", VAT]
        assert main([*args, "--base-url", "http://example.com/api"]) == 2
        assert "https" in capsys.readouterr().err

    def test_an_expired_batch_needs_yes_when_not_interactive(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 3)
        issued = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        out = tmp_path / "results.jsonl"
        args = [*renew_args(server, device_csv(tmp_path, ids), out), "--otp-issued-at", issued]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "expire" in err
        assert "--yes" in err
        assert server.fake.count() == 0

        assert main([*args, "--yes"]) == 1
        records = read_jsonl(out)
        assert {r["state"] for r in records} == {"SKIPPED"}
        assert {r["error_type"] for r in records} == {"OtpExpiredError"}
        assert server.fake.count() == 0

    def test_a_too_slow_batch_is_estimated_and_confirmed_interactively(
        self,
        server: ThreadedFake,
        env: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        ids = add_devices(server, 40)
        # Forty devices one at a time at an assumed 1 s each: 40 s, past the OTPs' 20 s left.
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)).isoformat()
        out = tmp_path / "results.jsonl"
        args = [
            *renew_args(server, device_csv(tmp_path, ids), out),
            "--otp-expires-at",
            expires,
            "--concurrency",
            "1",
            "--rate",
            "1000",
        ]

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "--rate 1000/s and --concurrency 1 take about 0:40 (estimate" in err
        assert "Start anyway? [y/N]" in err
        assert server.fake.count() == 0

        monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
        assert main(args) == 0
        assert len(read_jsonl(out)) == 40

    def test_interrupting_prints_what_was_done(
        self,
        server: ThreadedFake,
        env: None,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        ids = add_devices(server, 1)

        def interrupted(coro: Coroutine[Any, Any, Any]) -> None:
            coro.close()
            raise KeyboardInterrupt

        monkeypatch.setattr("pcsid_async.cli.batch.asyncio.run", interrupted)
        out = tmp_path / "results.jsonl"
        assert main(renew_args(server, device_csv(tmp_path, ids), out)) == 130
        assert "--resume" in capsys.readouterr().err


class TestCsvIsRefusedAsAWhole:
    @pytest.mark.parametrize(
        ("header", "rows", "expected"),
        [
            ("device_id", ["dev-1"], "missing column(s) otp"),
            ("device_id,otp,otp", ["dev-1,OTP-SECRET-0001,x"], "named twice: otp"),
            ("device_id,otp", ["dev-1,"], "row 1 (line 2), column otp: blank cell"),
            ("device_id,otp", ["dev-1,OTP-SECRET-0001", ",OTP-SECRET-0002"], "row 2 (line 3)"),
            ("device_id,otp", ["dev-1,OTP-SECRET 0001"], "column otp: contains whitespace"),
            ("device_id,otp", ["dev-1,OTP-SECRET-0001,extra"], "expected 2 cells, found 3"),
            (
                "device_id,otp",
                ["dev-1,OTP-SECRET-0001", "dev-2,OTP-SECRET-0002", "dev-1,OTP-SECRET-0003"],
                "row 3 (line 4), column device_id: duplicate device 'dev-1' (first in row 1",
            ),
            ("device_id,otp,vat", ["dev-1,OTP-SECRET-0001,30 01"], "column vat"),
            (
                "device_id,otp,otp_expires_at",
                ["dev-1,OTP-SECRET-0001,2030-01-01T10:00:00"],
                "column otp_expires_at: the timestamp needs a timezone",
            ),
            (
                "device_id,otp,otp_expires_at",
                ["dev-1,OTP-SECRET-0001,next tuesday"],
                "column otp_expires_at: not an ISO-8601 timestamp",
            ),
            ("device_id,otp", [], "no devices"),
        ],
    )
    def test_a_malformed_file_exits_2_naming_row_and_column_but_no_otp(
        self,
        server: ThreadedFake,
        env: None,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        header: str,
        rows: list[str],
        expected: str,
    ) -> None:
        csv_path = write_csv(tmp_path / "devices.csv", rows, header=header)
        assert main(renew_args(server, csv_path, tmp_path / "r.jsonl")) == 2
        captured = capsys.readouterr()
        assert expected in captured.err
        assert_no_secret(captured.out, captured.err)
        assert server.fake.count() == 0
        assert not (tmp_path / "r.jsonl").exists()

    def test_unknown_columns_are_refused_with_strict_columns(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = write_csv(
            tmp_path / "d.csv", ["dev-1,OTP-SECRET-0001,red"], header="device_id,otp,colour"
        )
        args = [*renew_args(server, csv_path, tmp_path / "r.jsonl"), "--strict-columns"]
        assert main(args) == 2
        assert "unknown column(s) 'colour'" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_many_problems_are_listed_together_and_counted(
        self, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        csv_path = write_csv(tmp_path / "d.csv", [f"dev-{i}," for i in range(30)])
        assert main(["renew", str(csv_path), "--out", str(tmp_path / "r.jsonl")]) == 2
        err = capsys.readouterr().err
        assert "row 20 (line 21)" in err
        assert "and 10 more" in err

    def test_blank_lines_are_ignored_and_a_bom_is_accepted(
        self, server: ThreadedFake, env: None, tmp_path: Path
    ) -> None:
        ids = add_devices(server, 2)
        csv_path = tmp_path / "d.csv"
        csv_path.write_text(
            f"\ufeffDevice_ID , OTP\n{ids[0]},{otp_of(0)}\n\n,\n{ids[1]} , {otp_of(1)} \n",
            encoding="utf-8",
        )
        assert main(renew_args(server, csv_path, tmp_path / "r.jsonl")) == 0
        assert server.fake.count("renew") == 2

    @pytest.mark.parametrize("content", [None, "", b"\xff\xfe\x00bad"])
    def test_a_missing_empty_or_unreadable_file_is_a_usage_error(
        self,
        env: None,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        content: str | bytes | None,
    ) -> None:
        csv_path = tmp_path / "d.csv"
        if isinstance(content, bytes):
            csv_path.write_bytes(content)
        elif content is not None:
            csv_path.write_text(content)
        assert main(["renew", str(csv_path), "--out", str(tmp_path / "r.jsonl")]) == 2
        assert str(csv_path) in capsys.readouterr().err


class TestCsvWarnings:
    def test_an_unknown_column_is_ignored_with_one_warning(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 3)
        rows = [f"{d},{otp_of(i)},kept in the spreadsheet" for i, d in enumerate(ids)]
        csv_path = write_csv(tmp_path / "d.csv", rows, header="device_id,otp,note")
        out = tmp_path / "r.jsonl"
        assert main(renew_args(server, csv_path, out)) == 0
        err = capsys.readouterr().err
        assert err.count("warning") == 1
        assert "unknown column(s) 'note'" in err
        assert len(read_jsonl(out)) == 3

    def test_an_otp_of_odd_length_is_named_by_row_not_printed(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rows = ["dev-1,123456", "dev-2,654321", "dev-3,23456", "dev-4,111111"]
        read_devices(write_csv(tmp_path / "d.csv", rows))
        err = capsys.readouterr().err
        assert err.count("warning") == 1
        assert "row(s) 3 " in err
        assert "leading zero" in err
        assert "23456" not in err

    def test_otps_of_one_length_give_no_warning(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        read_devices(write_csv(tmp_path / "d.csv", ["dev-1,123456", "dev-2,654321"]))
        assert capsys.readouterr().err == ""


class TestStatusCommand:
    @pytest.fixture
    def server(self) -> Iterator[ThreadedFake]:
        threaded = ThreadedFake(activity_polls=1)
        try:
            yield threaded
        finally:
            threaded.close()

    def test_a_succeeded_activity_prints_a_table_and_exits_0(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity)
        code = main(["status", activity, "--base-url", server.url, "--vat", VAT])
        out = capsys.readouterr().out
        assert code == 0
        assert activity in out
        assert "SUCCEEDED" in out
        assert "StandardTaxInvoice" in out

    def test_json_output_carries_the_failed_checks_and_a_failed_activity_exits_1(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(
            server.fake.create_activity, failing_checks={"SimplifiedTaxInvoice": "BR-1, BR-2"}
        )
        code = main(["status", activity, "--json", "--base-url", server.url, "--vat", VAT])
        assert code == 1
        record = json.loads(capsys.readouterr().out)
        assert record["state"] == "FAILED"
        assert record["failed_checks"] == ["SimplifiedTaxInvoice"]
        assert record["checks"]["SimplifiedTaxInvoice"]["messages"] == ["BR-1", "BR-2"]

    def test_wait_follows_the_activity_to_its_end(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity, polls=3)
        args = ["status", activity, "--wait", "--interval", "0.01", "--base-url", server.url]
        assert main([*args, "--vat", VAT]) == 0
        captured = capsys.readouterr()
        assert "IN_PROGRESS" in captured.err
        assert "SUCCEEDED" in captured.out
        assert server.fake.count("status") == 3

    def test_wait_past_the_timeout_exits_1_with_the_last_status(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity, polls=10_000)
        args = ["status", activity, "--wait", "--timeout", "0.05", "--interval", "0.01"]
        assert main([*args, "--base-url", server.url, "--vat", VAT]) == 1
        captured = capsys.readouterr()
        assert "did not finish" in captured.err
        assert "IN_PROGRESS" in captured.out

    def test_a_read_past_the_timeout_exits_1(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity = server.call(server.fake.create_activity)
        server.call(server.fake.inject, "status", "slow", delay=2.0)
        args = ["status", activity, "--timeout", "0.1", "--base-url", server.url, "--vat", VAT]
        assert main(args) == 1
        assert "no answer within 0.1 s" in capsys.readouterr().err

    def test_an_unknown_activity_exits_1_with_the_servers_error(
        self, server: ThreadedFake, env: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["status", "nope", "--base-url", server.url, "--vat", VAT]) == 1
        err = capsys.readouterr().err
        assert "BadRequestError" in err
        assert TOKEN not in err

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["a/b"], "activity_id must be a single path segment"),
            (["a b"], "ACTIVITY_ID must not contain whitespace"),
            (["abc", "--vat", ""], "no VAT"),
        ],
    )
    def test_bad_arguments_are_usage_errors(
        self,
        server: ThreadedFake,
        env: None,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        expected: str,
    ) -> None:
        vat = [] if "--vat" in args else ["--vat", VAT]
        assert main(["status", *args, *vat, "--base-url", server.url]) == 2
        assert expected in capsys.readouterr().err

    def test_an_interrupt_exits_130(
        self, server: ThreadedFake, env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def interrupted(coro: Coroutine[Any, Any, Any]) -> None:
            coro.close()
            raise KeyboardInterrupt

        monkeypatch.setattr("pcsid_async.cli.status.asyncio.run", interrupted)
        assert main(["status", "abc", "--base-url", server.url, "--vat", VAT]) == 130

    def test_a_status_without_counts_or_checks_still_prints(self) -> None:
        status = ActivityStatus(
            activity_id="abc",
            activity_type=None,
            state=ActivityState.IN_PROGRESS,
            errors=(ErrorDetail("6003", "Activity not found"),),
        )
        stream = io.StringIO()
        print_status(status, stream)
        text = stream.getvalue()
        assert "IN_PROGRESS" in text
        assert "[6003] Activity not found" in text
        assert "checks     -" in text


class TestDemo:
    def test_the_demo_exits_0_with_one_outcome_per_device(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "demo.jsonl"
        assert main(["demo", "--devices", "60", "--out", str(out)]) == 0
        captured = capsys.readouterr()
        records = read_jsonl(out)
        assert len(records) == 60
        assert len({r["device_id"] for r in records}) == 60
        states = {r["state"] for r in records}
        assert states == {"RENEWED", "FAILED", "UNKNOWN", "SKIPPED"}
        assert "failed compliance check" in captured.out
        assert "went as designed" in captured.out

    def test_a_tiny_demo_plants_nothing_and_still_exits_0(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["demo", "--devices", "3"]) == 0
        out = capsys.readouterr().out
        assert "Planted" not in out
        assert "Renewed 3 of 3" in out

    def test_the_demo_says_it_broke_when_a_device_has_no_outcome(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rows = [DeviceRow("dev-1", "OTP-SECRET-0001", None, None, 1, 2)]
        assert "OTP-SECRET" not in repr(rows[0])
        assert demo_verdict(Tally(1), rows) == 1
        assert "BROKEN" in capsys.readouterr().err


class TestFakeServerCommand:
    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_it_prints_credentials_writes_a_csv_and_stops_on_sigterm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        original = _print_credentials

        def then_terminate(fake: FakeClearTax, csv_path: Path | None) -> None:
            original(fake, csv_path)
            asyncio.get_running_loop().call_later(0.01, os.kill, os.getpid(), signal.SIGTERM)

        monkeypatch.setattr("pcsid_async.cli.fake_server._print_credentials", then_terminate)
        csv_path = tmp_path / "devices.csv"
        assert main(["fake-server", "--devices", "2", "--write-csv", str(csv_path)]) == 0
        out = capsys.readouterr().out
        assert "token: " in out
        assert "export CLEARTAX_AUTH_TOKEN=" in out
        assert out.rstrip().endswith("Fake ClearTax stopped.")
        assert len(csv_path.read_text().splitlines()) == 3

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_many_devices_print_a_summary_and_go_to_a_default_csv(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        original = _print_credentials

        def then_terminate(fake: FakeClearTax, csv_path: Path | None) -> None:
            original(fake, csv_path)
            asyncio.get_running_loop().call_later(0.01, os.kill, os.getpid(), signal.SIGTERM)

        monkeypatch.setattr("pcsid_async.cli.fake_server._print_credentials", then_terminate)
        monkeypatch.chdir(tmp_path)
        assert main(["fake-server", "--devices", "50"]) == 0
        out = capsys.readouterr().out
        assert len(out.splitlines()) < 15
        assert "50 devices; a sample: " in out
        assert "export CLEARTAX_AUTH_TOKEN=" in out
        assert " CLEARTAX_VAT=" in out
        assert "wrote fake-devices.csv" in out
        assert len((tmp_path / "fake-devices.csv").read_text().splitlines()) == 51

    def test_a_port_in_use_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            assert main(["fake-server", "--port", str(port)]) == 2
        assert f"cannot serve on port {port}" in capsys.readouterr().err


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
        assert [row[:3] for row in table] == [["100401", "SKIPPED", "3"], ["100401", "FAILED", "2"]]

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


class TestParser:
    def test_the_default_is_the_sandbox_and_production_is_a_flag(self) -> None:
        base = {"base_url": None, "production": False}
        assert _base_url(argparse.Namespace(**base)) == SANDBOX_URL
        assert _base_url(argparse.Namespace(**{**base, "production": True})) == PRODUCTION_URL

    def test_python_dash_m_runs_main(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr(sys, "argv", ["pcsid-async", "--version"])
        with pytest.raises(SystemExit) as raised:
            runpy.run_module("pcsid_async", run_name="__main__")
        assert raised.value.code == 0
        assert __version__ in capsys.readouterr().out

    def test_version_prints_the_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out.strip() == f"pcsid-async {__version__}"

    def test_no_command_prints_help_and_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert "renew" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "args",
        [
            ["renew", "d.csv"],  # no --out
            ["renew", "d.csv", "--out", "r", "--concurrency", "0"],
            ["renew", "d.csv", "--out", "r", "--rate", "-1"],
            ["renew", "d.csv", "--out", "r", "--rate", "fast"],
            ["renew", "d.csv", "--out", "r", "--concurrency", "many"],
            ["renew", "d.csv", "--out", "r", "--production", "--base-url", "https://x"],
            ["renew", "d.csv", "--out", "r", "--otp-expires-at", "x", "--otp-issued-at", "y"],
            ["fake-server", "--port", "70000"],
            ["fake-server", "--port", "http"],
            ["renew", "d.csv", "--out", "r", "--token", "x"],  # never a flag
        ],
    )
    def test_usage_errors_exit_2(self, args: list[str]) -> None:
        assert main(args) == 2

    def test_help_exits_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["renew", "--help"]) == 0
        assert "--otp-issued-at" in capsys.readouterr().out


def _run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcsid_async", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARTAX_")}
    env.update(extra)
    return env


class TestEndToEndInASubprocess:
    def test_renew_exit_codes_results_and_no_secret_anywhere(
        self, server: ThreadedFake, tmp_path: Path
    ) -> None:
        ids = add_devices(server, 8)
        bad = add_devices(server, 1, renew_error=("8001", "ZATCA says no"))
        env = _env(CLEARTAX_AUTH_TOKEN=TOKEN, CLEARTAX_VAT=VAT)
        out = tmp_path / "results.jsonl"
        csv_path = device_csv(tmp_path, ids + bad)
        args = ["renew", str(csv_path), "--out", str(out), "--base-url", server.url]

        first = _run(args, env)
        assert first.returncode == 1, first.stderr
        records = read_jsonl(out)
        assert len(records) == 9
        assert [r["error_codes"] for r in records if not r["ok"]] == [["8001"]]
        assert "Renewed 8 of 9" in first.stdout

        resumed = _run([*args, "--resume"], env)
        assert resumed.returncode == 1  # the planted device fails again
        assert len(read_jsonl(out)) == 10

        bad_csv = write_csv(tmp_path / "bad.csv", ["dev-1,"], header="device_id,otp")
        refused = _run(["renew", str(bad_csv), "--out", str(tmp_path / "x.jsonl")], env)
        assert refused.returncode == 2
        assert "row 1 (line 2), column otp" in refused.stderr

        every = (first, resumed, refused)
        assert_no_secret(*(p.stdout + p.stderr for p in every), out.read_text())

    def test_every_device_renewed_exits_0(self, server: ThreadedFake, tmp_path: Path) -> None:
        ids = add_devices(server, 3)
        env = _env(CLEARTAX_AUTH_TOKEN=TOKEN)
        out = tmp_path / "results.jsonl"
        done = _run(renew_args(server, device_csv(tmp_path, ids), out), env)
        assert done.returncode == 0, done.stderr
        assert len(read_jsonl(out)) == 3

    def test_version_and_help(self) -> None:
        version = _run(["--version"], _env())
        assert version.returncode == 0
        assert __version__ in version.stdout
        assert _run(["--help"], _env()).returncode == 0

    def test_the_demo_exits_0(self) -> None:
        demo = _run(["demo", "--devices", "80"], _env())
        assert demo.returncode == 0, demo.stderr
        assert "went as designed" in demo.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_fake_server_prints_credentials_and_stops_on_interrupt(self, tmp_path: Path) -> None:
        csv_path = tmp_path / "devices.csv"
        command = ["fake-server", "--devices", "3", "--write-csv", str(csv_path)]
        process = subprocess.Popen(
            [sys.executable, "-m", "pcsid_async", *command],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watchdog = threading.Timer(30, process.kill)  # never hang the suite
        watchdog.start()
        try:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith("Stop with"):
                    break
            process.send_signal(signal.SIGINT)
            rest, err = process.communicate(timeout=20)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.communicate()
        text = "".join(lines)
        assert "http://127.0.0.1:" in text
        assert "token:" in text
        assert "VAT:" in text
        assert len(csv_path.read_text().splitlines()) == 4
        assert "stopped" in rest
        assert process.returncode == 0, err
