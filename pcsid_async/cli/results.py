"""The JSON Lines results file: one record per outcome, opened safely for resume."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pcsid_async import (
    RenewalOutcome,
)
from pcsid_async._decode import scrub

if TYPE_CHECKING:
    pass

from ._common import UsageError


def outcome_record(
    outcome: RenewalOutcome, *, default_vat: str, secrets: Sequence[str]
) -> dict[str, Any]:
    """The JSON object written for one outcome (never an OTP or the token)."""
    error = outcome.error
    activity = outcome.activity
    result = outcome.result
    pcsid: str | None = None
    if activity is not None and activity.pcsid_generated is not None:
        pcsid = activity.pcsid_generated.value
    elif result is not None and (outcome.ok or not result.ok):
        pcsid = result.status.value  # GENERATED, or the renewal's own Status FAILED
    return {
        "device_id": outcome.device_id,
        "vat": outcome.request.vat or default_vat,
        "ok": outcome.ok,
        "state": outcome.state.value,
        "error_type": None if error is None else type(error).__name__,
        "error_message": None if error is None else scrub(str(error), secrets),
        "error_codes": list(outcome.error_codes),
        "pcsid_generated": pcsid,
        "activity_id": result.activity_id if result is not None else None,
        "activity_state": activity.state.value if activity is not None else None,
        "failed_checks": [] if activity is None else [c.value for c in activity.failed_checks],
        "attempts": outcome.attempts,
        "elapsed_s": round(outcome.elapsed, 3),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
    }


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
