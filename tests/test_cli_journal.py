"""The CLI's journal: the issue's scenario, resume rules, --retry-unknown, report, bad files."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from _cli_support import (
    TOKEN,
    VAT,
    ThreadedFake,
    read_jsonl,
    renew_args,
    write_csv,
)

from pcsid_async import (
    OutcomeState,
    PcsidError,
    RenewalJournal,
    RenewalOutcome,
    RenewalRequest,
)
from pcsid_async.cli import main
from pcsid_async.cli.stopping import Stopper


@pytest.fixture
def fake() -> Iterator[ThreadedFake]:
    """A fake with real OTPs: each works once, so a re-send is refused (and logged)."""
    threaded = ThreadedFake()
    try:
        yield threaded
    finally:
        threaded.close()


def _campaign(server: ThreadedFake, tmp_path: Path, n: int) -> tuple[list[str], list[str], Path]:
    ids = server.call(server.fake.add_devices, n)
    otps = server.call(server.fake.issue_otps, n)
    rows = [f"{d},{o}" for d, o in zip(ids, otps, strict=True)]
    return ids, otps, write_csv(tmp_path / "devices.csv", rows)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLEARTAX_")}
    environ["CLEARTAX_AUTH_TOKEN"] = TOKEN
    return subprocess.run(
        [sys.executable, "-m", "pcsid_async", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_issue_scenario_three_drops_stay_unknown_and_resume_sends_nothing_again(
    fake: ThreadedFake, tmp_path: Path
) -> None:
    _, otps, csv_path = _campaign(fake, tmp_path, 20)
    fake.call(fake.fake.inject, "renew", "drop_after", times=3)
    out = tmp_path / "results.jsonl"
    args = renew_args(fake, csv_path, out)
    first = _cli(*args)
    assert first.returncode == 1, first.stderr
    unknown = {r["device_id"] for r in read_jsonl(out) if r["state"] == "UNKNOWN"}
    assert len(unknown) == 3
    assert fake.fake.count("renew") == 20

    resumed = _cli(*args, "--resume")
    assert resumed.returncode == 1
    assert fake.fake.count("renew") == 20  # 20 requests for 20 devices, not 23
    records = read_jsonl(out)
    assert len(records) == 20
    assert {r["device_id"] for r in records if r["state"] == "UNKNOWN"} == unknown
    assert {r["state"] for r in records if r["device_id"] not in unknown} == {"RENEWED"}

    report_csv = tmp_path / "unknown.csv"
    report = _cli("report", str(out), "--unknown-csv", str(report_csv))
    assert report.returncode == 1, report.stderr
    assert "UNKNOWN devices (3)" in report.stdout
    assert "fetch a NEW OTP" in report.stdout
    with report_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["device_id"] for r in rows} == unknown
    assert {r["vat"] for r in rows} == {VAT}
    assert all(r["reason"] and r["what_to_do"] for r in rows)

    scanned = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name != "devices.csv" and p.is_file()
    )
    scanned += (first.stdout + first.stderr + resumed.stdout + report.stdout).encode()
    assert TOKEN.encode() not in scanned
    for otp in otps:
        assert otp.encode() not in scanned


def test_a_new_otp_is_sent_the_same_is_not_and_retry_unknown_sends_it(
    fake: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, otps, csv_path = _campaign(fake, tmp_path, 2)
    fake.call(fake.fake.inject, "renew", "drop_after")
    out = tmp_path / "results.jsonl"
    args = [*renew_args(fake, csv_path, out), "--concurrency", "1"]
    assert main(args) == 1
    (lost,) = [r["device_id"] for r in read_jsonl(out) if r["state"] == "UNKNOWN"]
    assert main([*args, "--resume"]) == 1
    assert fake.fake.count("renew", device_id=lost) == 1  # same OTP: not sent

    assert main([*args, "--resume", "--retry-unknown"]) == 2  # not a terminal: needs --yes
    assert "--retry-unknown sends 1 UNKNOWN device" in capsys.readouterr().err
    assert fake.fake.count("renew", device_id=lost) == 1
    assert main([*args, "--resume", "--retry-unknown", "--yes"]) == 1  # the spent OTP: refused
    assert fake.fake.count("renew", device_id=lost) == 2

    fresh = fake.call(fake.fake.issue_otp)
    rows = [f"{d},{fresh if d == lost else o}" for d, o in zip(ids, otps, strict=True)]
    write_csv(csv_path, rows)
    assert main([*args, "--resume"]) == 0  # a new OTP is sent
    assert fake.fake.count("renew", device_id=lost) == 3
    assert {r["state"] for r in read_jsonl(out)} == {"RENEWED"}
    assert [e.otp for e in fake.fake.ledger[lost]] == [otps[ids.index(lost)], fresh]
    assert "1 already renewed" in capsys.readouterr().out


def _other_vat_journal(path: Path) -> None:
    with RenewalJournal(path) as journal:
        journal.begin(vat="399999999999993")


def _not_a_journal_db(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (x)")


def _corrupt(path: Path) -> None:
    with RenewalJournal(path) as journal:
        journal.begin(vat=VAT)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("device_id,otp\n"), "not an SQLite database"),
        (_not_a_journal_db, "not a renewal journal"),
        (_other_vat_journal, "a journal of VAT 399999999999993"),
        (_corrupt, "corrupt"),
    ],
)
def test_a_bad_journal_is_a_clear_error_naming_the_file_and_nothing_is_sent(
    fake: ThreadedFake,
    env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: object,
    message: str,
) -> None:
    _, _, csv_path = _campaign(fake, tmp_path, 2)
    journal = tmp_path / "campaign.journal"
    make(journal)  # type: ignore[operator]
    out = tmp_path / "results.jsonl"
    args = [*renew_args(fake, csv_path, out), "--journal", str(journal), "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(journal) in err
    assert message in err
    assert fake.fake.count() == 0
    if make is not _other_vat_journal:  # a report reads any VAT's journal
        assert main(["report", str(journal)]) == 2
        assert str(journal) in capsys.readouterr().err


def test_report_of_a_clean_campaign_and_of_nothing(
    fake: ThreadedFake, env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, csv_path = _campaign(fake, tmp_path, 3)
    out = tmp_path / "results.jsonl"
    assert main(renew_args(fake, csv_path, out)) == 0
    capsys.readouterr()
    assert main(["report", f"{out}.journal"]) == 0
    report = capsys.readouterr().out
    assert "3 devices, 3 renewed" in report
    assert "UNKNOWN devices" not in report
    assert main(["report", str(tmp_path / "nothing.jsonl")]) == 2
    assert "no journal found" in capsys.readouterr().err


def _unknown(device_id: str, message: str = "the connection dropped") -> RenewalOutcome:
    return RenewalOutcome(
        request=RenewalRequest(device_id, "OTP-SECRET-9"),
        state=OutcomeState.UNKNOWN,
        result=None,
        activity=None,
        error=PcsidError(message),
        attempts=1,
        elapsed=0.1,
    )


def test_report_lists_unknown_devices_writes_their_csv_and_notes_sending_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "campaign.journal"
    with RenewalJournal(path) as journal:
        journal.begin(vat=VAT)
        for i in range(22):
            journal.record(_unknown(f"dev-{i:02d}"))
        journal.mark_sending("dev-in-flight", "OTP-SECRET-8")
    unknown_csv = tmp_path / "unknown.csv"
    assert main(["report", str(path), "--unknown-csv", str(unknown_csv)]) == 1
    report = capsys.readouterr().out
    assert "UNKNOWN devices (22)" in report
    assert "... and 2 more (see --unknown-csv)" in report
    assert "sending: in flight now, or cut off" in report
    assert "no activity id" in report
    with unknown_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 22
    assert rows[0]["reason"] == "the connection dropped"
    assert "Fatoora portal" in rows[0]["what_to_do"]
    assert "OTP-SECRET" not in unknown_csv.read_text() + report
    assert main(["report", str(path), "--unknown-csv", str(tmp_path / "no" / "x.csv")]) == 2
    assert "cannot write the CSV" in capsys.readouterr().err


def _signal_when(server: ThreadedFake, count: int, signum: int) -> threading.Thread:
    def trigger() -> None:
        deadline = time.monotonic() + 20
        while server.fake.count("renew") < count and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(os.getpid(), signum)  # handled by the CLI's loop in the main thread

    thread = threading.Thread(target=trigger, daemon=True)
    thread.start()
    return thread


def test_sigterm_in_process_the_grace_ends_and_the_cut_off_are_recorded(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stuck = ThreadedFake(latency={"renew": 30.0})
    try:
        ids, _, csv_path = _campaign(stuck, tmp_path, 6)
        out = tmp_path / "results.jsonl"
        args = [*renew_args(stuck, csv_path, out), "--concurrency", "2", "--grace", "0.05"]
        thread = _signal_when(stuck, 2, signal.SIGTERM)
        assert main(args) == 143
        thread.join()
    finally:
        stuck.close()
    captured = capsys.readouterr()
    assert "2 cut off in flight" in captured.err
    records = read_jsonl(out)
    assert len(records) == 2
    assert {r["error_type"] for r in records} == {"InterruptedRenewalError"}
    assert "UNKNOWN" in captured.out
    assert {r["device_id"] for r in records} <= set(ids)


async def test_the_stopper_first_signal_stops_starting_the_second_cancels() -> None:
    stopper = Stopper(grace=60.0)
    installed = asyncio.Event()

    async def run() -> None:
        stopper.install()
        installed.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopper.remove()

    task = asyncio.ensure_future(run())
    await installed.wait()
    assert stopper.exit_code is None
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(2000):
        if stopper.stopping:
            break
        await asyncio.sleep(0.001)
    assert stopper.exit_code == 130
    assert not task.done()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopper.cancelled
