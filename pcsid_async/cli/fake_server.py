"""``pcsid-async fake-server``: run FakeClearTax on 127.0.0.1 for manual trials."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pcsid_async.testing import FakeClearTax

from ._common import EXIT_OK, REQUIRED_COLUMNS, TOKEN_ENV, VAT_ENV, UsageError

# The README quickstart reads its base URL from here (defaulting to the sandbox).
BASE_URL_ENV: Final = "CLEARTAX_BASE_URL"

# Devices printed one per line up to this many; beyond, a sample and the CSV file.
MAX_PRINTED_DEVICES: Final = 10
# Where the devices go when there are too many to print and no --write-csv was given.
DEFAULT_CSV: Final = Path("fake-devices.csv")


def _print_credentials(fake: FakeClearTax, csv_path: Path | None) -> None:
    credentials = fake.sample_credentials()
    lines = [
        f"Fake ClearTax listening on {credentials.url}",
        f"  token: {credentials.token}",
        f"  VAT:   {credentials.vat}",
    ]
    if len(credentials.devices) <= MAX_PRINTED_DEVICES:
        lines.append("  devices (device_id, otp):")
        lines += [f"    {device},{otp}" for device, otp in credentials.devices]
    else:
        device, otp = credentials.devices[0]
        lines.append(f"  {len(credentials.devices)} devices; a sample: {device},{otp}")
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(REQUIRED_COLUMNS)
            writer.writerows(credentials.devices)
        lines.append(f"  wrote {csv_path}")
    if credentials.sandbox_otp is not None:
        lines += [
            f"  sandbox OTP {credentials.sandbox_otp}: accepted once per device, like the "
            f"sandbox's (renew {credentials.renew_device}, generate {credentials.generate_device})",
            "The README quickstart runs against it as written:",
            f"  export {TOKEN_ENV}={credentials.token} {VAT_ENV}={credentials.vat} "
            f"{BASE_URL_ENV}={credentials.url}",
            "  python quickstart.py",
        ]
    lines += [
        "Try:",
        f"  export {TOKEN_ENV}={credentials.token} {VAT_ENV}={credentials.vat}",
        f"  pcsid-async renew {csv_path or 'devices.csv'} --out results.jsonl "
        f"--base-url {credentials.url} --vat {credentials.vat}",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)


async def _serve_fake(
    port: int, devices: int, csv_path: Path | None, *, sandbox: bool = False
) -> None:
    from pcsid_async.testing import run_fake_server  # noqa: PLC0415

    task = asyncio.current_task()
    assert task is not None  # run by asyncio.run
    # Not on Windows, nor outside the main thread: Ctrl-C still works there.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run_fake_server(
        port=port,
        devices=devices,
        ready=lambda fake: _print_credentials(fake, csv_path),
        latency=0.03,
        renew_starts_activity=True,
        activity_polls=2,
        sandbox_otp=sandbox,
    )


def _cmd_fake_server(args: argparse.Namespace) -> int:
    csv_path = Path(args.write_csv) if args.write_csv else None
    if csv_path is None and args.devices > MAX_PRINTED_DEVICES:
        csv_path = DEFAULT_CSV
    try:
        asyncio.run(_serve_fake(args.port, args.devices, csv_path, sandbox=args.sandbox))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise UsageError(f"cannot serve on port {args.port}: {exc}") from None
    print("Fake ClearTax stopped.", flush=True)
    return EXIT_OK


# --- argument parsing ----------------------------------------------------------------------
