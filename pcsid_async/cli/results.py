"""The JSON Lines results file: one record per outcome, opened safely for resume."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pcsid_async import JournalError, RenewalJournal, RenewalOutcome
from pcsid_async._journal_rules import outcome_record as journal_record

from ._common import UsageError


def outcome_record(
    outcome: RenewalOutcome, *, default_vat: str, secrets: Sequence[str]
) -> dict[str, Any]:
    """The JSON object written for one outcome (never an OTP or the token).

    The same record the journal keeps, so a line is alike whether it was appended during the
    run or exported from the journal at its end.
    """
    return journal_record(outcome, default_vat=default_vat, secrets=secrets)


def _open_results(path: Path, *, resume: bool) -> IO[str]:
    try:
        if not resume and path.exists() and path.stat().st_size > 0:
            raise UsageError(
                f"{path} already has results; pass --resume to continue that run, or choose "
                "another --out (results of a run that spent OTPs are never overwritten)"
            )
        handle = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot open the results file: {exc}") from None
    if handle.tell() > 0:
        with path.open("rb") as check:
            check.seek(-1, os.SEEK_END)
            if check.read(1) != b"\n":
                handle.write("\n")  # the last line of a crashed run was cut short
    return handle


@contextlib.contextmanager
def open_journal(path: Path, out_path: Path, *, resume: bool, vat: str) -> Iterator[RenewalJournal]:
    """Open the run's journal and take its run lock (``begin``); a bad journal is a UsageError.

    Without ``--resume`` an existing journal is refused (it may hold spent OTPs); with it, a
    results file that has lines but no journal (written by a version without one) is refused
    too: what was in flight when it stopped cannot be known.
    """
    journal = RenewalJournal(path)
    try:
        journal.open()
        devices = journal.summary()["total"]
        if devices and not resume:
            raise UsageError(
                f"{path} holds the journal of an earlier run ({devices} devices); pass --resume "
                "to continue it (the journal decides what is sent again), or choose another "
                "--out or --journal"
            )
        if not devices and resume and out_path.exists() and out_path.stat().st_size > 0:
            raise UsageError(
                f"{out_path} has results but the journal {path} holds none, so what was in "
                "flight when that run stopped cannot be known; pass --journal PATH if it is "
                "elsewhere, or renew the remaining devices with a new --out"
            )
        interrupted = journal.begin(vat=vat)
    except JournalError as exc:
        journal.close()
        raise UsageError(f"{exc}") from None
    except BaseException:
        journal.close()
        raise
    if interrupted:
        print(
            f"pcsid-async: {len(interrupted)} device(s) were in flight when the last run "
            "ended: recorded UNKNOWN (interrupted) and not sent again with the same OTP",
            file=sys.stderr,
        )
    try:
        yield journal
    finally:
        journal.close()


def export_results(journal: RenewalJournal, out_path: Path) -> None:
    """Rewrite ``out_path`` atomically from the journal: one line per device with an outcome."""
    try:
        journal.export_jsonl(out_path)
    except OSError as exc:
        raise UsageError(f"{out_path}: cannot write the results file: {exc}") from None
