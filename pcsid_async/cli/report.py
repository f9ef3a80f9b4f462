"""``pcsid-async report RESULTS.jsonl``: a campaign's summary from its journal, nothing sent.

Reads the journal beside the results file (``RESULTS.jsonl.journal``) or a journal given
directly, without taking its run lock (a report may be read while a run goes on). Lists the
UNKNOWN devices an operator must check; ``--unknown-csv PATH`` writes them as a CSV to act
on. Never shows an OTP (the journal holds none).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any, Final

from pcsid_async import JournalError, RenewalJournal
from pcsid_async._journal import JournalRow

from ._common import EXIT_NOT_ALL, EXIT_OK, UsageError

UNKNOWN_COLUMNS: Final = (
    "device_id",
    "vat",
    "reason",
    "error_type",
    "activity_id",
    "status_code",
    "request_id",
    "sent_at",
    "finished_at",
    "what_to_do",
)
# UNKNOWN devices listed on the terminal before "... and N more (see --unknown-csv)".
MAX_LISTED: Final = 20
WHAT_TO_DO: Final = (
    "An UNKNOWN device's renewal may have been processed: its OTP may be spent. Before "
    "renewing it again, check it: with an activity id, `pcsid-async status ACTIVITY_ID`; "
    "otherwise in the Fatoora portal or with ClearTax. If it was renewed, nothing is left to "
    "do. If it was not, fetch a NEW OTP for it, put it in the CSV and run `renew --resume`: "
    "a new OTP is sent, the old one never again (unless --retry-unknown)."
)


def add_report(commands: Any) -> None:
    """The ``report`` sub-command's parser."""
    report = commands.add_parser(
        "report",
        help="summarise a campaign from its journal (sends nothing)",
        description=(
            "Summarise the renewal campaign recorded in the journal of RESULTS.jsonl (its "
            "RESULTS.jsonl.journal) or in a journal file given directly, and list the "
            "UNKNOWN devices to check. Sends nothing. " + WHAT_TO_DO
        ),
    )
    report.add_argument("path", metavar="RESULTS.jsonl|JOURNAL")
    report.add_argument(
        "--unknown-csv", metavar="PATH", help="write the UNKNOWN devices to PATH as CSV"
    )
    report.set_defaults(handler=_cmd_report)


def journal_path_of(path: Path) -> Path:
    """The journal a path names: ``path.journal`` when it exists, else ``path`` itself."""
    beside = Path(f"{path}.journal")
    if beside.exists():
        return beside
    if path.exists() and path.stat().st_size > 0:
        return path
    raise UsageError(f"{path}: no journal found (looked for {beside} and {path})")


def _cmd_report(args: argparse.Namespace) -> int:
    path = journal_path_of(Path(args.path))
    try:
        with RenewalJournal(path) as journal:
            rows = list(journal.rows())
            counts = journal.summary()
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    unknown = [r for r in rows if r.state == "UNKNOWN"]
    print_report(path, rows, counts, unknown, sys.stdout)
    if args.unknown_csv:
        write_unknown_csv(Path(args.unknown_csv), unknown)
        print(f"\nWrote {len(unknown)} UNKNOWN device(s) to {args.unknown_csv}")
    return EXIT_OK if counts["RENEWED"] == counts["total"] else EXIT_NOT_ALL


def _reason(row: JournalRow) -> str:
    record = row.record or {}
    return str(record.get("error_message") or record.get("error_type") or row.state)


def print_report(
    path: Path,
    rows: list[JournalRow],
    counts: dict[str, int],
    unknown: list[JournalRow],
    stream: IO[str],
) -> None:
    """The campaign's counts per state, failures by error, and the UNKNOWN devices."""
    write = stream.write
    write(f"Campaign in {path}: {counts['total']} devices, {counts['RENEWED']} renewed\n\n")
    write(f"  {'state':<10}{'devices':>8}\n")
    for state in ("RENEWED", "FAILED", "UNKNOWN", "SKIPPED", "sending", "pending"):
        if counts[state] or state.isupper():
            write(f"  {state:<10}{counts[state]:>8}\n")
    if counts["sending"]:
        write("  (sending: in flight now, or cut off; the next run records them UNKNOWN)\n")
    errors: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if row.record is not None and not row.record.get("ok"):
            codes = ",".join(row.record.get("error_codes") or ())
            errors[codes or str(row.record.get("error_type")), row.state] += 1
    if errors:
        write(f"\n  {'not renewed, by error':<32}{'state':<10}{'devices':>8}\n")
        for (code, state), count in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
            write(f"  {code:<32}{state:<10}{count:>8}\n")
    if unknown:
        write(f"\nUNKNOWN devices ({len(unknown)}): check each before renewing it again.\n")
        for row in unknown[:MAX_LISTED]:
            activity = (row.record or {}).get("activity_id")
            where = f"activity {activity}" if activity else "no activity id"
            write(f"  {row.device_id}  ({where})  {_reason(row)[:100]}\n")
        if len(unknown) > MAX_LISTED:
            write(f"  ... and {len(unknown) - MAX_LISTED} more (see --unknown-csv)\n")
        write(f"\n{WHAT_TO_DO}\n")
    stream.flush()


def write_unknown_csv(path: Path, unknown: list[JournalRow]) -> None:
    """The UNKNOWN devices as CSV (``UNKNOWN_COLUMNS``); never an OTP."""
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(UNKNOWN_COLUMNS)
            for row in unknown:
                record = row.record or {}
                activity = record.get("activity_id")
                todo = (
                    f"pcsid-async status {activity}"
                    if activity
                    else "check in the Fatoora portal or with ClearTax"
                )
                writer.writerow(
                    (
                        row.device_id,
                        row.vat or record.get("vat") or "",
                        _reason(row),
                        record.get("error_type") or "",
                        activity or "",
                        record.get("status_code") or "",
                        record.get("request_id") or "",
                        row.sent_at or "",
                        record.get("finished_at") or "",
                        todo + "; if not renewed, renew with a new OTP",
                    )
                )
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the CSV: {exc}") from None
