"""``pcsid-async demo``: renew devices on an in-process fake with planted failures."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from pcsid_async import (
    PcsidClient,
    RetryPolicy,
)

if TYPE_CHECKING:
    from pcsid_async.testing import FakeClearTax

from ._common import EXIT_NOT_ALL, EXIT_OK, OTP_LIFETIME
from .batch import BatchOptions, run_batch
from .csv_input import DeviceRow
from .progress import Progress, Tally
from .results import _open_results
from .summary import print_summary

# What the demo plants among its devices (kept small so most of a demo run succeeds).
_DEMO_REJECTED: Final = ("8001", "ZATCA rejected the renewal: the CSR does not match the device")
_DEMO_FAILING_CHECKS: Final = {
    "SimplifiedTaxInvoiceCredit": "BR-KSA-17: the credit note has no reason, BR-KSA-56",
    "StandardTaxInvoiceDebit": "BR-KSA-F-06: the buyer VAT number is missing",
}


def _demo_rows(fake: FakeClearTax, devices: int) -> tuple[list[DeviceRow], list[str]]:
    """Register ``devices`` devices on the fake, with a few planted failures; return the rows."""
    ids = fake.add_devices(devices)
    otps = fake.issue_otps(devices)
    expires = dt.datetime.now(dt.timezone.utc) + OTP_LIFETIME
    rows = [
        DeviceRow(d, o, None, expires, i + 1, i + 2)
        for i, (d, o) in enumerate(zip(ids, otps, strict=True))
    ]
    planted: list[str] = []
    # Spread the planted devices out so they land in different parts of the run.
    slots = iter(range(3, devices, max(1, devices // 9)))

    def plant(description: str, change: Callable[[int], None]) -> None:
        index = next(slots, None)
        if index is not None:
            change(index)
            planted.append(description)

    def replace(index: int, **kwargs: Any) -> None:
        row = rows[index]
        device = fake.add_device(**kwargs)
        rows[index] = attrs.evolve(row, device_id=device)

    plant("a device ZATCA rejects (8001)", lambda i: replace(i, renew_error=_DEMO_REJECTED))
    plant("a device ZATCA rejects (8001)", lambda i: replace(i, renew_error=_DEMO_REJECTED))
    plant("a device without a PCSID (6002)", lambda i: replace(i, has_pcsid=False))
    plant(
        "a device failing two compliance checks",
        lambda i: replace(i, failing_checks=_DEMO_FAILING_CHECKS),
    )
    plant(
        "a device failing two compliance checks",
        lambda i: replace(i, failing_checks=_DEMO_FAILING_CHECKS),
    )
    plant("an OTP the portal already expired", lambda i: fake.expire_otp(rows[i].otp))
    plant(
        "an OTP reused from another device",
        lambda i: rows.__setitem__(i, attrs.evolve(rows[i], otp=rows[0].otp)),
    )
    plant(
        "an OTP past its otp_expires_at (skipped, not sent)",
        lambda i: rows.__setitem__(
            i, attrs.evolve(rows[i], otp_expires_at=expires - 2 * OTP_LIFETIME)
        ),
    )
    if devices >= 20:
        fake.inject("renew", "drop_after")  # processed, answer lost: UNKNOWN
        planted.append("an answer lost after processing (unknown)")
        fake.inject("renew", "rate_limit", retry_after=0.5)
        planted.append("a 429 with Retry-After 0.5 s (the whole batch pauses)")
    return rows, planted


async def _demo(devices: int, concurrency: int, out: IO[str] | None, out_path: Path | None) -> int:
    # Imported here: only demo and fake-server need the fake (and aiohttp.web).
    from pcsid_async.testing import FakeClearTax  # noqa: PLC0415

    async with FakeClearTax(
        latency={"renew": 0.04, "status": 0.02},
        renew_starts_activity=True,
        activity_polls=2,
        seed=2026,
    ) as fake:
        rows, planted = _demo_rows(fake, devices)
        print(
            f"pcsid-async demo: renewing {devices} devices on a fake ClearTax at {fake.url}",
            flush=True,
        )
        if planted:
            print("Planted, so expect them in the summary:", *planted, sep="\n  - ", flush=True)
        print(flush=True)
        client = PcsidClient(
            fake.token,
            fake.vat,
            base_url=fake.url,
            max_connections=concurrency,
            retry=RetryPolicy(initial_delay=0.05, max_delay=0.5),
        )
        tally = Tally(len(rows))
        progress = Progress(tally, sys.stderr, tty=sys.stderr.isatty())
        await run_batch(
            client,
            rows,
            options=BatchOptions(
                concurrency=concurrency,
                activity_timeout=30.0,
                activity_interval=0.05,
                activity_max_interval=0.2,
            ),
            tally=tally,
            progress=progress,
            out=out,
            secrets=(fake.token,),
        )
    print_summary(tally, sys.stdout, out=out_path)
    return demo_verdict(tally, rows)


def demo_verdict(tally: Tally, rows: Sequence[DeviceRow]) -> int:
    """The demo's exit code: 0 when every device got exactly one outcome (failures planted)."""
    if tally.done != len(rows) or tally.device_ids != {r.device_id for r in rows}:
        print(
            f"pcsid-async demo: BROKEN: {tally.done} outcomes for {len(rows)} devices",
            file=sys.stderr,
        )
        return EXIT_NOT_ALL
    print("\nThe demo went as designed: every device has exactly one outcome.")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    out_path = Path(args.out) if args.out else None
    out = _open_results(out_path, resume=False) if out_path is not None else None
    try:
        return asyncio.run(_demo(args.devices, args.concurrency, out, out_path))
    finally:
        if out is not None:
            out.close()
