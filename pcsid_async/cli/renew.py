"""``pcsid-async renew DEVICES.csv --out RESULTS.jsonl``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from pcsid_async import PcsidClient, RenewalJournal, RenewalRequest

from ._common import (
    EXIT_NOT_ALL,
    EXIT_OK,
    OTP_LIFETIME,
    VAT_ENV,
    UsageError,
    _confirm,
    _make_client,
    _token,
    parse_timestamp,
)
from .batch import BatchOptions, _check_deadline, _run_and_report
from .csv_input import DeviceRow, read_devices
from .results import _open_results, export_results, open_journal


def _cmd_renew(args: argparse.Namespace) -> int:
    token = _token()
    default_expiry: dt.datetime | None = None
    if args.otp_expires_at:
        default_expiry = parse_timestamp(args.otp_expires_at, "--otp-expires-at")
    elif args.otp_issued_at:
        default_expiry = parse_timestamp(args.otp_issued_at, "--otp-issued-at") + OTP_LIFETIME
    rows = read_devices(
        Path(args.devices), default_expiry=default_expiry, strict_columns=args.strict_columns
    )
    vat = args.vat or os.environ.get(VAT_ENV, "").strip() or None
    if vat is None:
        if any(r.vat is None for r in rows):
            raise UsageError(
                f"no VAT: pass --vat or set {VAT_ENV} (or give every row a vat column value)"
            )
        vat = rows[0].vat
    assert vat is not None
    out_path = Path(args.out)
    journal_path = Path(args.journal) if args.journal else Path(f"{out_path}.journal")
    client = _make_client(
        args,
        token,
        vat,
        timeout=args.request_timeout,
        max_connections=args.concurrency,
        rate_limit=args.rate,
    )
    _open_results(out_path, resume=args.resume).close()  # never overwrites earlier results
    with open_journal(journal_path, out_path, resume=args.resume, vat=vat) as journal:
        try:
            return _renew_journaled(args, client, rows, journal, out_path, token)
        finally:
            export_results(journal, out_path)


def _renew_journaled(
    args: argparse.Namespace,
    client: PcsidClient,
    rows: list[DeviceRow],
    journal: RenewalJournal,
    out_path: Path,
    token: str,
) -> int:
    requests = [RenewalRequest(r.device_id, r.otp, vat=r.vat) for r in rows]
    held = [journal.decide(q) for q in requests]  # the rules without --retry-unknown
    standing = frozenset(
        q.device_id
        for q, d in zip(requests, held, strict=True)
        if not (d.send or (args.retry_unknown and d.state == "UNKNOWN"))
    )
    unknown = [d for d in held if d.state == "UNKNOWN" and not d.send]
    if args.retry_unknown and unknown:
        _confirm(
            f"--retry-unknown sends {len(unknown)} UNKNOWN device(s) again with the same OTP: "
            "their earlier request may have been processed (the OTP spent), so the server may "
            "refuse it or renew the device a second time",
            yes=args.yes,
        )
    pending = [r for r in rows if r.device_id not in standing]
    if not pending:
        counts = journal.summary()
        print(
            f"Nothing to do: all {len(rows)} devices have an outcome in {journal.path} that "
            f"stands ({counts['RENEWED']} renewed, {counts['UNKNOWN']} unknown, "
            f"{counts['FAILED']} failed); see `pcsid-async report {out_path}`"
        )
        return EXIT_OK if all(d.state == "RENEWED" for d in held) else EXIT_NOT_ALL
    _check_deadline(
        pending,
        rate=args.rate,
        concurrency=args.concurrency,
        yes=args.yes,
        await_activities=not args.no_wait_activities,
    )
    options = BatchOptions(
        concurrency=args.concurrency,
        await_activities=not args.no_wait_activities,
        activity_timeout=args.activity_timeout,
        journal=journal,
        retry_unknown=args.retry_unknown,
        grace=args.grace,
        standing=standing,
    )
    with _open_results(out_path, resume=True) as out:
        return _run_and_report(
            client, rows, options, out=out, out_path=out_path, token=token, resumed=len(standing)
        )
