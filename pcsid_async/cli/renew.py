"""``pcsid-async renew DEVICES.csv --out RESULTS.jsonl``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from ._common import (
    EXIT_OK,
    OTP_LIFETIME,
    VAT_ENV,
    UsageError,
    _make_client,
    _token,
    parse_timestamp,
)
from .batch import BatchOptions, _check_deadline, _run_and_report
from .csv_input import read_devices, read_done
from .results import _open_results


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
    done: set[str] = set()
    if args.resume:
        done, unreadable = read_done(out_path)
        if unreadable:
            print(
                f"pcsid-async: note: ignored {unreadable} unreadable line(s) in {out_path}",
                file=sys.stderr,
            )
    pending = [r for r in rows if r.device_id not in done]
    resumed = len(rows) - len(pending)
    client = _make_client(
        args,
        token,
        vat,
        timeout=args.request_timeout,
        max_connections=args.concurrency,
        rate_limit=args.rate,
    )
    if not pending:
        print(f"Nothing to do: all {len(rows)} devices already have an ok line in {out_path}")
        return EXIT_OK
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
    )
    out = _open_results(out_path, resume=args.resume)
    with out:
        return _run_and_report(
            client, pending, options, out=out, out_path=out_path, token=token, resumed=resumed
        )
