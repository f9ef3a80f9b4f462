# ruff: noqa: F811  (the shared fixture `env` is imported from _cli_support)
"""The CLI's journal: the issue's scenario, resume rules, --retry-unknown, report, bad files."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_support import (  # noqa: F401
    TOKEN,
    VAT,
    ThreadedFake,
    env,
    read_jsonl,
    renew_args,
    write_csv,
)

from pcsid_async import RenewalJournal
from pcsid_async.cli import main


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
    with sqlite3.connect(path) as db:
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
