"""Shared by the commands: constants, exit codes, UsageError, durations, credentials."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from pcsid_async import (
    InvalidArgumentError,
    PcsidClient,
)
from pcsid_async._client import PRODUCTION_URL, SANDBOX_URL

if TYPE_CHECKING:
    pass


TOKEN_ENV: Final = "CLEARTAX_AUTH_TOKEN"
VAT_ENV: Final = "CLEARTAX_VAT"
# The client's own default: long enough for a slow gateway, short next to an OTP's hour.
REQUEST_TIMEOUT: Final = 30.0
# ZATCA's OTPs live one hour from issue.
OTP_LIFETIME: Final = dt.timedelta(hours=1)
# The per-device time assumed by the up-front estimate when nothing was measured.
ASSUMED_LATENCY: Final = 1.0
COLUMNS: Final = ("device_id", "otp", "vat", "otp_expires_at")
REQUIRED_COLUMNS: Final = ("device_id", "otp")
# Redraws per second of the live bar: smooth enough, cheap enough.
TTY_REFRESH: Final = 0.1
# A line every few seconds in logs (not a terminal) tells progress without flooding them.
PLAIN_REFRESH: Final = 5.0
# CSV problems listed before "... and N more": enough to fix a file in one go.
MAX_LISTED_PROBLEMS: Final = 20

EXIT_OK: Final = 0
EXIT_NOT_ALL: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """A usage or input problem: reported on stderr with exit code 2, nothing sent."""


def parse_timestamp(text: str, what: str) -> dt.datetime:
    """Parse an ISO-8601 timestamp that carries its timezone (``Z`` or an offset)."""
    value = text.strip()
    if value[-1:] in ("z", "Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{what}: not an ISO-8601 timestamp (e.g. 2026-11-22T10:15:00+03:00)"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"{what}: the timestamp needs a timezone (Z or an offset like +03:00)")
    return moment


def format_duration(seconds: float, *, precise: bool = False) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour; ``precise``: ``4.2 s`` under a minute)."""
    if not math.isfinite(seconds):
        return "?"
    if precise and seconds < 60:
        return f"{max(0.0, seconds):.1f} s"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _confirm(message: str, *, yes: bool) -> None:
    """Say ``message``; go on with ``--yes`` or an interactive yes, else refuse (exit 2)."""
    print(f"pcsid-async: warning: {message}", file=sys.stderr)
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError("not started: re-run with --yes to start anyway")
    sys.stderr.write("Start anyway? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not started")


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(
            f"set the API token in the environment variable {TOKEN_ENV} "
            "(it is never taken from a flag, where it would show in `ps`)"
        )
    return token


def _base_url(args: argparse.Namespace) -> str:
    if args.base_url:
        return str(args.base_url)
    return PRODUCTION_URL if args.production else SANDBOX_URL


def _make_client(args: argparse.Namespace, token: str, vat: str, **kwargs: Any) -> PcsidClient:
    try:
        return PcsidClient(token, vat, base_url=_base_url(args), **kwargs)
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None
