"""The ``renew`` command: a CSV in, a results file out, exit codes, resume, secrets."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from _cli_support import (
    VAT,
    ThreadedFake,
    add_devices,
    assert_no_secret,
    device_csv,
    otp_of,
    read_jsonl,
    renew_args,
    write_csv,
)

from pcsid_async.cli import main


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

    def test_resume_follows_the_journal_a_spent_otp_is_not_resent_a_new_one_is(
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

        assert main([*args, "--resume"]) == 1  # a 500 may have spent the OTP: not re-sent
        assert server.fake.count("renew") == before
        assert "Nothing to do" in capsys.readouterr().out

        rows = [f"{d},{otp_of(i)}" for i, d in enumerate(ids) if d not in failed]
        write_csv(csv_path, [*rows, f"{failed[0]},NEW-OTP-SECRET-1"])
        assert main([*args, "--resume"]) == 0  # a new OTP for the failed device is sent
        assert server.fake.count("renew") == before + 1
        records = read_jsonl(out)
        assert len(records) == 5  # rewritten from the journal: one line per device
        assert {r["device_id"]: r["ok"] for r in records}[failed[0]] is True
        assert "4 already renewed" in capsys.readouterr().out

    def test_resume_refuses_results_that_have_no_journal(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 2)
        out = tmp_path / "results.jsonl"
        done = json.dumps({"device_id": ids[0], "ok": True})
        out.write_text(f'\n{done}\n\n{{"device_id": "x", "o')
        assert main([*renew_args(server, device_csv(tmp_path, ids), out), "--resume"]) == 2
        assert "holds none" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_existing_results_are_not_overwritten_without_resume(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 1)
        out = tmp_path / "results.jsonl"
        out.write_text('{"device_id": "earlier", "ok": false}\n')
        assert main(renew_args(server, device_csv(tmp_path, ids), out)) == 2
        assert "--resume" in capsys.readouterr().err
        assert server.fake.count() == 0

    def test_an_earlier_journal_needs_resume(
        self, server: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = add_devices(server, 1)
        out = tmp_path / "results.jsonl"
        args = renew_args(server, device_csv(tmp_path, ids), out)
        assert main(args) == 0
        out.unlink()
        assert main(args) == 2
        assert "holds the journal of an earlier run" in capsys.readouterr().err
        assert server.fake.count("renew") == 1

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
        assert "cannot open the results file" in capsys.readouterr().err
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
        # Forty devices one at a time at an assumed 1 s each plus 10 s for the awaited
        # activity: 7:20, past the OTPs' 20 s left.
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
        assert "--rate 1000/s and --concurrency 1 take about 7:20 (estimate" in err
        assert "assuming 1 s per renewal plus 10 s awaiting its activity" in err
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
