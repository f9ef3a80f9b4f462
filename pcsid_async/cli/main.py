"""Argument parsing and dispatch: ``main()``.

Streams: the progress bar and prompts go to stderr; the summary table (and ``status``'s
answer) to stdout; the JSON Lines file given with ``--out`` is the machine-readable result,
one object per device, flushed as each device finishes.

Secrets: the API token is read only from ``CLEARTAX_AUTH_TOKEN`` (a flag would show in
``ps``), and neither the token nor any OTP is ever printed or written, not even in error
messages (a bad CSV cell is named by row and column, never by its value). ``fake-server``
is the one exception: it prints the test credentials of the fake it runs.

Exit codes: 0 every device renewed (``demo``: every device got its one outcome), 1 some
device was not renewed (or ``status`` saw a FAILED activity, a timeout or an error), 2 usage
or input errors (nothing was sent), 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pcsid_async._client import PRODUCTION_URL
from pcsid_async._version import __version__

from ._common import EXIT_INTERRUPTED, EXIT_USAGE, REQUEST_TIMEOUT, TOKEN_ENV, VAT_ENV, UsageError
from .demo import _cmd_demo
from .fake_server import _cmd_fake_server
from .renew import _cmd_renew
from .report import add_report
from .status import _cmd_status


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vat", help=f"the VAT number (default: ${VAT_ENV})")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--base-url", help="the API's base URL (default: the sandbox)")
    where.add_argument(
        "--production", action="store_true", help=f"use production ({PRODUCTION_URL})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pcsid-async``."""
    parser = argparse.ArgumentParser(
        prog="pcsid-async",
        description="Renew ZATCA PCSIDs of EGS devices through ClearTax, many at a time.",
        epilog=(
            f"The API token is read from ${TOKEN_ENV} only. Progress goes to stderr, the "
            "summary to stdout. Exit codes: 0 all renewed, 1 not all renewed, 2 usage or "
            "input error, 130 interrupted (SIGINT), 143 terminated (SIGTERM). "
            "Start with: pcsid-async demo"
        ),
    )
    parser.add_argument("--version", action="version", version=f"pcsid-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_renew(commands)
    _add_status(commands)
    add_report(commands)
    _add_demo_and_fake(commands)
    return parser


def _add_renew(commands: Any) -> None:
    renew = commands.add_parser(
        "renew",
        help="renew the devices of a CSV file",
        description=(
            "Renew every device of DEVICES.csv (header device_id,otp; optional columns vat, "
            "otp_expires_at) and write one JSON line per device to --out. The whole file is "
            "checked before anything is sent."
        ),
    )
    renew.add_argument("devices", metavar="DEVICES.csv")
    renew.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="results file")
    _add_connection_flags(renew)
    renew.add_argument(
        "--concurrency",
        type=_positive_int,
        default=32,
        metavar="N",
        help="devices in progress at once (default: 32)",
    )
    renew.add_argument(
        "--rate",
        type=_positive_float,
        metavar="R",
        help="at most R requests per second (default: no limit; a 429 still pauses the batch)",
    )
    expiry = renew.add_mutually_exclusive_group()
    expiry.add_argument(
        "--otp-expires-at", metavar="ISO", help="when the OTPs expire (rows may override)"
    )
    expiry.add_argument(
        "--otp-issued-at", metavar="ISO", help="when the OTPs were issued (they live 1 hour)"
    )
    renew.add_argument(
        "--resume",
        action="store_true",
        help="continue the run of the journal: what it holds follows the resume rules",
    )
    renew.add_argument(
        "--journal",
        metavar="PATH",
        help="the run's crash-safe journal (default: RESULTS.jsonl.journal)",
    )
    renew.add_argument(
        "--retry-unknown",
        action="store_true",
        help="send UNKNOWN devices again with the same OTP (asks first; their OTP may be spent)",
    )
    renew.add_argument(
        "--grace",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="on SIGINT/SIGTERM, seconds the requests in flight get to finish (default: 10)",
    )
    renew.add_argument("--yes", action="store_true", help="start without asking (see warnings)")
    renew.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=REQUEST_TIMEOUT,
        metavar="S",
        help=f"seconds for one request attempt (default: {REQUEST_TIMEOUT:g})",
    )
    renew.add_argument(
        "--activity-timeout",
        type=_positive_float,
        default=900.0,
        metavar="S",
        help="seconds to wait for each PCSID generation activity (default: 900)",
    )
    renew.add_argument(
        "--no-wait-activities",
        action="store_true",
        help="do not wait for the activities renewals start",
    )
    renew.add_argument(
        "--strict-columns", action="store_true", help="refuse a CSV with unknown columns"
    )
    renew.set_defaults(handler=_cmd_renew)


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="show a PCSID generation activity's status",
        description="Read (or, with --wait, follow to the end) a PCSID generation activity.",
    )
    status.add_argument("activity_id", metavar="ACTIVITY_ID")
    status.add_argument("--wait", action="store_true", help="poll until it finishes")
    _add_connection_flags(status)
    status.add_argument(
        "--timeout",
        type=_positive_float,
        default=900.0,
        metavar="S",
        help="give up after S seconds (with --wait: for the whole wait; default: 900)",
    )
    status.add_argument(
        "--interval",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="with --wait: first delay between polls (default: 2)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_cmd_status)


def _add_demo_and_fake(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="renew devices on an in-process fake server (start here)",
        description=(
            "Start a fake ClearTax in-process, with realistic latency and a few planted "
            "failures, and renew its devices with the progress bar and summary of `renew`."
        ),
    )
    demo.add_argument("--devices", type=_positive_int, default=200, metavar="N")
    demo.add_argument("--concurrency", type=_positive_int, default=32, metavar="N")
    demo.add_argument("--out", metavar="RESULTS.jsonl", help="also write the results file")
    demo.set_defaults(handler=_cmd_demo)

    fake = commands.add_parser(
        "fake-server",
        help="run a fake ClearTax server for manual trials",
        description="Run FakeClearTax on 127.0.0.1 and print a token, a VAT and devices/OTPs.",
    )
    fake.add_argument("--port", type=_port, default=0, help="default: any free port")
    fake.add_argument("--devices", type=_positive_int, default=5, metavar="N")
    fake.add_argument(
        "--write-csv",
        metavar="PATH",
        help="write the devices as a CSV (default: fake-devices.csv beyond 10 devices)",
    )
    fake.add_argument(
        "--sandbox",
        action="store_true",
        help="also accept the sandbox sample OTP 123345 (once per device) and serve the "
        "README quickstart's devices; prints a ready export line for it",
    )
    fake.set_defaults(handler=_cmd_fake_server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"pcsid-async: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pcsid-async: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
