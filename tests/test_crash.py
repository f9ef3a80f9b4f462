"""The CLI across real crashes and signals: kill -9, SIGTERM, SIGINT, two runs at once.

The CLI runs in a subprocess against a FakeClearTax in this process (real OTPs, each valid
once); the fake's request log is the referee of "never sent twice". Kills and signals are
triggered by the fake's request count, not by sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_support import TOKEN, VAT, ThreadedFake, read_jsonl, write_csv

DEVICES = 24


@pytest.fixture
def slow_fake() -> Iterator[ThreadedFake]:
    """Renewals take 40 ms, so a run at concurrency 4 has requests in flight at any moment."""
    threaded = ThreadedFake(latency={"renew": 0.04})
    try:
        yield threaded
    finally:
        threaded.close()


def _campaign(server: ThreadedFake, tmp_path: Path, n: int = DEVICES) -> tuple[list[str], Path]:
    ids = server.call(server.fake.add_devices, n)
    otps = server.call(server.fake.issue_otps, n)
    rows = [f"{d},{otp}" for d, otp in zip(ids, otps, strict=True)]
    return ids, write_csv(tmp_path / "devices.csv", rows)


def _start(server: ThreadedFake, csv_path: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARTAX_")}
    env["CLEARTAX_AUTH_TOKEN"] = TOKEN
    args = ["renew", str(csv_path), "--out", str(out), "--base-url", server.url, "--vat", VAT]
    return subprocess.Popen(
        [sys.executable, "-m", "pcsid_async", *args, "--concurrency", "4", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_renews(server: ThreadedFake, count: int, process: subprocess.Popen[str]) -> None:
    """Return once the fake has received ``count`` renew requests (the trigger)."""
    deadline = time.monotonic() + 20
    while server.fake.count("renew") < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached the trigger"
        time.sleep(0.001)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def _sends_per_device(server: ThreadedFake, ids: list[str]) -> dict[str, int]:
    return {d: server.fake.count("renew", device_id=d) for d in ids}


def test_kill_9_at_several_points_then_resume_never_sends_an_otp_twice(
    slow_fake: ThreadedFake, tmp_path: Path
) -> None:
    ids, csv_path = _campaign(slow_fake, tmp_path)
    out = tmp_path / "results.jsonl"
    in_flight_at_kill = 0
    for trigger in (3, 9, 15):
        process = _start(slow_fake, csv_path, out, *(["--resume"] if trigger > 3 else []))
        _wait_for_renews(slow_fake, trigger, process)
        in_flight_at_kill += slow_fake.fake.in_flight
        process.kill()  # SIGKILL: no handler runs
        process.communicate()
    assert in_flight_at_kill > 0  # the kills did land with requests in flight
    code, stdout, _ = _finish(_start(slow_fake, csv_path, out, "--resume"))
    assert code == 1  # the devices cut off in flight are UNKNOWN, not renewed
    sends = _sends_per_device(slow_fake, ids)
    assert max(sends.values()) == 1  # each device's one OTP reached the fake at most once
    records = read_jsonl(out)
    assert sorted(r["device_id"] for r in records) == sorted(ids)  # one line per device
    unknown = [r for r in records if r["state"] == "UNKNOWN"]
    assert unknown
    assert {r["error_type"] for r in unknown} == {"InterruptedRenewalError"}
    assert all(r["state"] == "RENEWED" for r in records if r not in unknown)
    assert "UNKNOWN" in stdout

    # Once more: nothing left to send, the same answer, still one line per device.
    code, stdout, _ = _finish(_start(slow_fake, csv_path, out, "--resume"))
    assert code == 1
    assert "Nothing to do" in stdout
    assert _sends_per_device(slow_fake, ids) == sends
    assert len(read_jsonl(out)) == DEVICES


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_starting_devices_lets_in_flight_finish_and_records_all(
    slow_fake: ThreadedFake, tmp_path: Path, signum: int, code: int
) -> None:
    ids, csv_path = _campaign(slow_fake, tmp_path)
    out = tmp_path / "results.jsonl"
    process = _start(slow_fake, csv_path, out, "--grace", "5")
    _wait_for_renews(slow_fake, 6, process)
    process.send_signal(signum)
    returncode, stdout, stderr = _finish(process)
    assert returncode == code, stderr
    assert "starting no new device" in stderr
    sent = [d for d, n in _sends_per_device(slow_fake, ids).items() if n]
    assert len(sent) < DEVICES  # it stopped starting devices
    records = read_jsonl(out)
    # the grace (5 s) covered the 40 ms requests in flight: each finished and was recorded
    assert sorted(r["device_id"] for r in records) == sorted(sent)
    assert {r["state"] for r in records} == {"RENEWED"}
    assert "Renewed" in stdout
    assert "--resume" in stderr

    returncode, _, _ = _finish(_start(slow_fake, csv_path, out, "--resume"))
    assert returncode == 0
    assert set(_sends_per_device(slow_fake, ids).values()) == {1}
    assert len(read_jsonl(out)) == DEVICES


def test_the_grace_ends_and_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    slow = ThreadedFake(latency={"renew": 30.0})  # in flight until the client gives up
    try:
        ids, csv_path = _campaign(slow, tmp_path, 4)
        out = tmp_path / "results.jsonl"
        process = _start(slow, csv_path, out, "--grace", "0.2")
        _wait_for_renews(slow, 4, process)
        process.send_signal(signal.SIGTERM)
        returncode, _, stderr = _finish(process)
        assert returncode == 143
        records = read_jsonl(out)
        assert sorted(r["device_id"] for r in records) == sorted(ids)
        assert {r["error_type"] for r in records} == {"InterruptedRenewalError"}

        ids, csv_path = _campaign(slow, tmp_path, 4)
        out = tmp_path / "second.jsonl"
        process = _start(slow, csv_path, out, "--grace", "60")
        _wait_for_renews(slow, 8, process)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        first_line = process.stderr.readline()  # the handshake: the first signal was handled
        assert "SIGINT: starting no new device" in first_line
        process.send_signal(signal.SIGINT)
        returncode, _, stderr = _finish(process)
        assert returncode == 130
        assert "stopping now" in stderr
        assert {r["state"] for r in read_jsonl(out)} == {"UNKNOWN"}
    finally:
        slow.close()


def test_a_second_run_on_the_same_journal_refuses_before_sending(tmp_path: Path) -> None:
    stuck = ThreadedFake(latency={"renew": 30.0})  # the first run stays mid-flight
    try:
        ids, csv_path = _campaign(stuck, tmp_path, 8)
        out = tmp_path / "results.jsonl"
        first = _start(stuck, csv_path, out, "--grace", "0.1")
        _wait_for_renews(stuck, 4, first)
        second = _start(stuck, csv_path, out, "--resume")
        returncode, _, stderr = _finish(second)
        assert returncode == 2
        assert "in use by another run" in stderr
        assert f"{out}.journal" in stderr
        assert stuck.fake.count("renew") == 4  # the second sent nothing
        first.send_signal(signal.SIGTERM)
        assert _finish(first)[0] == 143
        assert max(_sends_per_device(stuck, ids).values()) == 1
    finally:
        stuck.close()
