"""The ``demo`` and ``fake-server`` commands."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from _cli_support import (
    read_jsonl,
)

from pcsid_async.cli import main
from pcsid_async.cli.csv_input import DeviceRow
from pcsid_async.cli.demo import demo_verdict
from pcsid_async.cli.fake_server import _print_credentials
from pcsid_async.cli.progress import Tally
from pcsid_async.testing import FakeClearTax


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
