"""The batch shared by ``renew`` and ``demo``: run, estimate, report."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from pcsid_async import (
    APIConnectionError,
    OutcomeState,
    PcsidClient,
    RenewalJournal,
    RenewalOutcome,
    RenewalRequest,
)
from pcsid_async._batch import _cancel_and_wait
from pcsid_async._batch_journal import recorded_outcome
from pcsid_async._decode import scrub

if TYPE_CHECKING:
    pass

from ._common import (
    ASSUMED_LATENCY,
    EXIT_INTERRUPTED,
    EXIT_NOT_ALL,
    EXIT_OK,
    _confirm,
    format_duration,
)
from .csv_input import DeviceRow
from .progress import Progress, Tally
from .results import outcome_record
from .stopping import Stopper
from .summary import print_summary


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How ``renew``/``demo`` run their batch."""

    concurrency: int
    await_activities: bool = True
    activity_timeout: float | None = 900.0
    activity_interval: float = 2.0
    activity_max_interval: float = 20.0
    journal: RenewalJournal | None = None
    retry_unknown: bool = False
    grace: float = 10.0
    standing: frozenset[str] = frozenset()  # devices whose recorded outcome stands (not sent)


async def run_batch(
    client: PcsidClient,
    rows: Sequence[DeviceRow],
    *,
    options: BatchOptions,
    tally: Tally,
    progress: Progress,
    out: IO[str] | None,
    secrets: Sequence[str],
    stopper: Stopper | None = None,
) -> None:
    """Renew ``rows`` through ``client.renew_many``; count, write and show each outcome.

    With a ``stopper`` (``renew``), SIGINT/SIGTERM stop the run gracefully (see ``stopping``):
    the cancellation its grace timer sends ends here, not in the caller. Without one (``demo``)
    Ctrl-C raises KeyboardInterrupt as before.
    """
    handle_signals = stopper is not None
    stopper = stopper or Stopper(options.grace)
    requests = (
        RenewalRequest(r.device_id, r.otp, vat=r.vat, otp_expires_at=r.otp_expires_at)
        for r in rows
        if not stopper.stopping
    )
    tasks = [asyncio.get_running_loop().create_task(progress.run())]
    unreachable_said = False
    if handle_signals:
        stopper.install()
    try:
        async with client:
            outcomes = client.renew_many(
                requests,
                concurrency=options.concurrency,
                await_activities=options.await_activities,
                activity_timeout=options.activity_timeout,
                activity_interval=options.activity_interval,
                activity_max_interval=options.activity_max_interval,
                journal=options.journal,
                retry_unknown=options.retry_unknown,
            )
            async with contextlib.aclosing(outcomes):
                async for outcome in outcomes:
                    _one_outcome(outcome, client, options, tally, rows, out, secrets)
                    if not unreachable_said:
                        unreachable_said = say_if_unreachable(outcome, client.base_url, secrets)
    except asyncio.CancelledError:
        if not stopper.cancelled:
            raise
        current = asyncio.current_task()
        if current is not None and hasattr(current, "uncancel"):  # 3.11+
            current.uncancel()
    finally:
        stopper.remove()
        tally.finished = time.monotonic()
        await _cancel_and_wait(tasks)
        progress.finish()


def _one_outcome(
    outcome: RenewalOutcome,
    client: PcsidClient,
    options: BatchOptions,
    tally: Tally,
    rows: Sequence[DeviceRow],
    out: IO[str] | None,
    secrets: Sequence[str],
) -> None:
    """Count, show and (unless an earlier run recorded it) append one outcome.

    With a journal the record is the journal's (just committed, or the one that stands).
    """
    record: dict[str, Any] | None = None
    if options.journal is not None:
        recorded = options.journal.decide(outcome.request).record
        record = None if recorded is None else dict(recorded)
    if record is None:
        record = outcome_record(
            outcome, default_vat=client.vat, secrets=(*secrets, outcome.request.otp)
        )
    tally.add(outcome, record)
    warn_if_late(tally, rows, options.concurrency)
    if out is not None and outcome.device_id not in options.standing:
        # A short synchronous write per device, for `tail -f`; with a journal the final
        # export rewrites the file from it.
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()


def settle_interrupted(journal: RenewalJournal, rows: Sequence[DeviceRow], tally: Tally) -> int:
    """Record the devices still ``sending`` (cut off by a stop) as interrupted UNKNOWN."""
    settled = set(journal.begin(vat=journal.vat or ""))
    for row in rows:
        if row.device_id in settled:
            request = RenewalRequest(row.device_id, row.otp, vat=row.vat)
            decision = journal.decide(request)
            outcome = recorded_outcome(request, decision, OutcomeState)
            tally.add(outcome, dict(decision.record or {}))
    return len(settled)


def warn_if_late(tally: Tally, rows: Sequence[DeviceRow], concurrency: int) -> None:
    """Warn once (stderr) when the measured pace projects a finish past the earliest OTP expiry.

    The pace is the mean time a device held a slot so far (renewal plus awaited activity).
    """
    if tally.late_warned:
        return
    left = tally.projected_seconds_left(concurrency)
    expiries = [r.otp_expires_at for r in rows if r.otp_expires_at is not None]
    if left is None or not expiries:
        return
    earliest = min(expiries)
    finish = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=left)
    if finish <= earliest:
        return
    tally.late_warned = True
    per_device = tally.device_seconds / tally.done
    print(
        f"pcsid-async: warning: at the measured {per_device:.1f} s per device the batch "
        f"finishes in about {format_duration(left)}, after the earliest OTP expiry "
        f"({earliest.isoformat()}); devices whose OTP expires are SKIPPED, not sent",
        file=sys.stderr,
        flush=True,
    )


# The up-front estimate's time a renewal holds its slot while its activity is awaited, when
# nothing was measured yet. ZATCA's six compliance checks take seconds to minutes; the poller
# looks at 0, 2, 5 and 9.75 s, so even a quick activity holds the slot about this long.
ASSUMED_ACTIVITY_WAIT: Final = 10.0


def say_if_unreachable(outcome: RenewalOutcome, base_url: str, secrets: Sequence[str]) -> bool:
    """One stderr line when the batch's unreachable breaker skipped its first device.

    Only that breaker skips a device with an ``APIConnectionError``; returns whether it said so.
    """
    error = outcome.error
    if outcome.state is not OutcomeState.SKIPPED or not isinstance(error, APIConnectionError):
        return False
    cause = scrub(str(error.__cause__ or error), tuple(secrets))
    print(
        f"pcsid-async: stopped sending: the API at {base_url} is unreachable ({cause}); the "
        "remaining devices are SKIPPED, not sent, their OTPs unspent. Check --base-url and "
        "the network, then run again (renew --resume sends only the devices not yet renewed)",
        file=sys.stderr,
        flush=True,
    )
    return True


def estimate_seconds(
    devices: int, *, rate: float | None, concurrency: int, await_activities: bool = False
) -> float:
    """How long ``devices`` renewals take: ``max(N / rate, N * per_device / concurrency)``.

    ``per_device`` is :data:`ASSUMED_LATENCY`, plus :data:`ASSUMED_ACTIVITY_WAIT` when the
    activities are awaited (a device holds its slot until its activity ends).
    """
    by_rate = devices / rate if rate else 0.0
    per_device = ASSUMED_LATENCY + (ASSUMED_ACTIVITY_WAIT if await_activities else 0.0)
    return max(by_rate, devices * per_device / concurrency)


def _check_deadline(
    rows: Sequence[DeviceRow],
    *,
    rate: float | None,
    concurrency: int,
    yes: bool,
    await_activities: bool = True,
) -> None:
    expiries = [r.otp_expires_at for r in rows if r.otp_expires_at is not None]
    if not expiries:
        return
    now = dt.datetime.now(dt.timezone.utc)
    earliest = min(expiries)
    estimate = estimate_seconds(
        len(rows), rate=rate, concurrency=concurrency, await_activities=await_activities
    )
    if now + dt.timedelta(seconds=estimate) <= earliest:
        return
    at_rate = f"--rate {rate:g}/s and " if rate else ""
    left = (earliest - now).total_seconds()
    when = (
        f"expired {format_duration(-left)} ago"
        if left < 0
        else f"expires in {format_duration(left)}"
    )
    assumed = f"{ASSUMED_LATENCY:g} s per renewal" + (
        f" plus {ASSUMED_ACTIVITY_WAIT:g} s awaiting its activity (--no-wait-activities: "
        "renewals only)"
        if await_activities
        else ""
    )
    _confirm(
        f"the batch may not finish before the OTPs expire: {len(rows)} devices at "
        f"{at_rate}--concurrency {concurrency} take about {format_duration(estimate)} "
        f"(estimate, assuming {assumed}; the run warns if its measured pace is slower), and "
        f"the earliest OTP {when} ({earliest.isoformat()}). Devices whose OTP has expired are "
        "SKIPPED, not sent.",
        yes=yes,
    )


def _run_and_report(
    client: PcsidClient,
    rows: Sequence[DeviceRow],
    options: BatchOptions,
    *,
    out: IO[str] | None,
    out_path: Path | None,
    token: str,
    resumed: int = 0,
) -> int:
    tally = Tally(len(rows))
    progress = Progress(tally, sys.stderr, tty=sys.stderr.isatty())
    stopper = Stopper(options.grace)
    interrupted = False
    try:
        asyncio.run(
            run_batch(
                client,
                rows,
                options=options,
                tally=tally,
                progress=progress,
                out=out,
                secrets=(token,),
                stopper=stopper,
            )
        )
    except KeyboardInterrupt:  # where no signal handler could be installed
        interrupted = True
    cut_off = 0 if options.journal is None else settle_interrupted(options.journal, rows, tally)
    print_summary(tally, sys.stdout, out=out_path, resumed=resumed)
    code = stopper.exit_code or (EXIT_INTERRUPTED if interrupted else None)
    if code is None:
        return EXIT_OK if tally.states[OutcomeState.RENEWED] == tally.total else EXIT_NOT_ALL
    print(
        f"pcsid-async: interrupted after {tally.done} of {tally.total} devices"
        + (f" ({cut_off} cut off in flight: UNKNOWN, interrupted)" if cut_off else "")
        + (f"; re-run with --resume to continue {out_path}" if out_path else ""),
        file=sys.stderr,
    )
    return code
