"""Argument parsing, and the real thing in a subprocess (``python -m pcsid_async``)."""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _cli_support import (
    TOKEN,
    VAT,
    ThreadedFake,
    add_devices,
    assert_no_secret,
    device_csv,
    read_jsonl,
    renew_args,
    write_csv,
)

import pcsid_async
from pcsid_async import (
    PRODUCTION_URL,
    SANDBOX_URL,
    __version__,
)
from pcsid_async.cli import main
from pcsid_async.cli._common import _base_url


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
            # run_path, not run_module: pytest's assertion rewriter (the package is a pytest plugin)
            # cannot hand runpy a module's code object.
            runpy.run_path(
                str(Path(pcsid_async.__file__).parent / "__main__.py"), run_name="__main__"
            )
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
        assert resumed.returncode == 1  # the refused device stands FAILED (its OTP is spent)
        assert len(read_jsonl(out)) == 9  # the journal's export: one line per device
        assert "Nothing to do" in resumed.stdout

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
