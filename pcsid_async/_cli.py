"""The ``pcsid-async`` command-line tool: batch renewal from a CSV, status, demo, fake server.

Streams: the progress bar and prompts go to stderr; the summary table (and ``status``'s
answer) to stdout; the JSON Lines file given with ``--out`` is the machine-readable result,
one object per device, flushed as each device finishes.

Secrets: the API token is read only from ``CLEARTAX_AUTH_TOKEN`` (a flag would show in
``ps``), and neither the token nor any OTP is ever printed or written, not even in error
messages (a bad CSV cell is named by row and column, never by its value). ``fake-server``
is the one exception: it prints the test credentials of the fake it runs.

Exit codes: 0 every device renewed (``demo``: every device got its one outcome), 1 some
device was not renewed (or ``status`` saw a FAILED activity, a timeout or an error), 2 usage
or input errors (nothing was sent), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from ._batch import OutcomeState, PcsidClient, RenewalOutcome, RenewalRequest, _cancel_and_wait
from ._client import PRODUCTION_URL, SANDBOX_URL, check_token_like
from ._config import RetryPolicy
from ._decode import scrub
from ._errors import ActivityTimeoutError, APIStatusError, InvalidArgumentError, PcsidError
from ._models import ActivityState, ActivityStatus, ErrorDetail
from ._version import __version__

if TYPE_CHECKING:
    from .testing import FakeClearTax

__all__ = ["main"]

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


# --- input ---------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class DeviceRow:
    """One validated CSV row (its ``repr`` hides the OTP)."""

    device_id: str
    otp: str
    vat: str | None
    otp_expires_at: dt.datetime | None
    row: int
    line: int

    def __repr__(self) -> str:
        return f"DeviceRow(device_id={self.device_id!r}, row={self.row}, line={self.line})"


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


def _cell_problem(value: str, column: str) -> str | None:
    if not value:
        return "blank cell"
    try:
        check_token_like(value, column)
    except InvalidArgumentError:
        return "contains whitespace or control characters"
    return None


def read_devices(path: Path, *, default_expiry: dt.datetime | None = None) -> list[DeviceRow]:
    """Read and validate a devices CSV as a whole; any problem refuses the file.

    Raises:
        UsageError: naming the rows and columns at fault (never an OTP's value).

    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                raise UsageError(
                    f"{path}: the file is empty; expected a header line 'device_id,otp'"
                ) from None
            return _read_rows(path, header, reader, default_expiry)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the file: {exc}") from None


def _read_rows(
    path: Path,
    header: list[str],
    reader: Any,
    default_expiry: dt.datetime | None,
) -> list[DeviceRow]:
    names = [name.strip().lower() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise UsageError(
            f"{path}: line 1: unknown column(s) {', '.join(repr(n) for n in unknown)}; "
            f"the columns are {', '.join(COLUMNS)} (the last two optional)"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise UsageError(
            f"{path}: line 1: missing column(s) {', '.join(missing)}; "
            "the header must name at least device_id,otp"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UsageError(f"{path}: line 1: column(s) named twice: {', '.join(repeated)}")

    problems: list[str] = []
    rows: list[DeviceRow] = []
    first_seen: dict[str, tuple[int, int]] = {}
    number = 0
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and a spreadsheet's empty trailing rows
        number += 1
        where = f"row {number} (line {line})"
        if len(cells) != len(names):
            problems.append(f"{where}: expected {len(names)} cells, found {len(cells)}")
            continue
        record = dict(zip(names, (cell.strip() for cell in cells), strict=True))
        row_problems: list[str] = []
        for column in REQUIRED_COLUMNS:
            problem = _cell_problem(record[column], column)
            if problem:
                row_problems.append(f"{where}, column {column}: {problem}")
        vat = record.get("vat") or None
        if vat is not None and _cell_problem(vat, "vat"):
            row_problems.append(f"{where}, column vat: contains whitespace or control characters")
        expires = default_expiry
        if record.get("otp_expires_at"):
            try:
                expires = parse_timestamp(
                    record["otp_expires_at"], f"{where}, column otp_expires_at"
                )
            except UsageError as exc:
                row_problems.append(str(exc))
        device_id = record["device_id"]
        if device_id and device_id in first_seen:
            first_row, first_line = first_seen[device_id]
            row_problems.append(
                f"{where}, column device_id: duplicate device {device_id!r} "
                f"(first in row {first_row}, line {first_line})"
            )
        elif device_id:
            first_seen[device_id] = (number, line)
        if row_problems:
            problems.extend(row_problems)
            continue
        rows.append(DeviceRow(device_id, record["otp"], vat, expires, number, line))
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        raise UsageError(
            f"{path} was refused as a whole; nothing was sent:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )
    if not rows:
        raise UsageError(f"{path}: no devices: the file has a header but no rows")
    return rows


def read_done(path: Path) -> tuple[set[str], int]:
    """Device ids that already have an ``ok`` line in a results file, and unreadable lines."""
    done: set[str] = set()
    unreadable = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for text in handle:
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except ValueError:
                    unreadable += 1  # e.g. the last line of a crashed run, cut short
                    continue
                if (
                    isinstance(record, dict)
                    and record.get("ok") is True
                    and isinstance(record.get("device_id"), str)
                ):
                    done.add(record["device_id"])
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the results file to resume: {exc}") from None
    return done, unreadable


# --- output --------------------------------------------------------------------------------


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


def _example(outcome: RenewalOutcome, record: dict[str, Any]) -> str:
    """A short example text for a failure group: the provider's messages, else ours."""
    error = outcome.error
    activity = outcome.activity
    if activity is not None and activity.is_terminal and not activity.succeeded:
        checks = ", ".join(c.value for c in activity.failed_checks) or "none reported"
        return f"{record['state']} activity {activity.state.value}; failed checks: {checks}"
    details: tuple[ErrorDetail, ...] = ()
    if isinstance(error, APIStatusError) and error.errors:
        details = error.errors
    elif outcome.result is not None and outcome.result.errors:
        details = outcome.result.errors
    text = "; ".join(d.message or d.code for d in details) or str(record["error_message"])
    return f"{record['state']} {text}"


class Tally:
    """Counts of a run: per state, failures per error code, failed compliance checks."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.states: Counter[OutcomeState] = Counter()
        self.by_code: Counter[str] = Counter()
        self.code_example: dict[str, str] = {}
        self.checks: Counter[str] = Counter()
        self.device_ids: set[str] = set()
        self.started = time.monotonic()
        self.finished: float | None = None

    def add(self, outcome: RenewalOutcome, record: dict[str, Any]) -> None:
        """Count one outcome (``record`` is its JSON object, secrets already removed)."""
        self.done += 1
        self.states[outcome.state] += 1
        self.device_ids.add(outcome.device_id)
        for check in record["failed_checks"]:
            self.checks[check] += 1
        if outcome.ok:
            return
        codes = record["error_codes"]
        key = ",".join(codes) if codes else str(record["error_type"])
        self.by_code[key] += 1
        if key not in self.code_example:
            self.code_example[key] = _example(outcome, record)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    @property
    def rate(self) -> float:
        """Devices finished per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


class Progress:
    """A live progress bar on a terminal, or a plain line every few seconds otherwise."""

    def __init__(self, tally: Tally, stream: IO[str], *, tty: bool) -> None:
        self.tally = tally
        self.stream = stream
        self.tty = tty
        self.interval = TTY_REFRESH if tty else PLAIN_REFRESH
        self._last_width = 0

    def line(self) -> str:
        """The progress text: done/total, per-state counts, rate and ETA."""
        t = self.tally
        states = t.states
        rate = t.rate
        remaining = t.total - t.done
        eta = format_duration(remaining / rate) if rate > 0 else "?"
        if t.done >= t.total:
            eta = "0:00"
        counts = (
            f"{t.done}/{t.total}  ok {states[OutcomeState.RENEWED]}  "
            f"failed {states[OutcomeState.FAILED]}  unknown {states[OutcomeState.UNKNOWN]}  "
            f"skipped {states[OutcomeState.SKIPPED]}  {rate:.1f}/s  ETA {eta}"
        )
        if not self.tty:
            return "progress: " + counts
        width = shutil.get_terminal_size((100, 20)).columns
        bar_width = max(10, min(40, width - len(counts) - 4))
        filled = bar_width if t.total == 0 else int(bar_width * t.done / t.total)
        return f"[{'#' * filled}{'.' * (bar_width - filled)}] {counts}"

    def render(self) -> None:
        """Draw the bar in place (terminal) or print one line (not a terminal)."""
        text = self.line()
        if self.tty:
            pad = max(0, self._last_width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._last_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """The last drawing, ending the bar's line."""
        self.render()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    async def run(self) -> None:
        """Redraw every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.render()


def print_summary(tally: Tally, stream: IO[str], *, out: Path | None, resumed: int = 0) -> None:
    """The end-of-run table: counts per state, failures by error code, failed checks."""
    write = stream.write
    elapsed = tally.elapsed
    write(
        f"\nRenewed {tally.states[OutcomeState.RENEWED]} of {tally.total} devices in "
        f"{format_duration(elapsed, precise=True)} ({tally.rate:.1f} devices/s)"
        + (f"; {resumed} already renewed in {out} were not sent again" if resumed else "")
        + "\n\n"
    )
    notes = {
        OutcomeState.RENEWED: "",
        OutcomeState.FAILED: "not renewed; see the error of each",
        OutcomeState.UNKNOWN: "may have been processed: check these devices before retrying",
        OutcomeState.SKIPPED: "never sent; see the reason of each",
    }
    write(f"  {'state':<10}{'devices':>8}\n")
    for state in OutcomeState:
        note = f"   {notes[state]}" if tally.states[state] and notes[state] else ""
        write(f"  {state.value:<10}{tally.states[state]:>8}{note}\n")
    if tally.by_code:
        title = "not renewed, by error code"
        width = max(len(title) + 2, *(len(key) + 2 for key in tally.by_code))
        write(f"\n  {title:<{width}}{'devices':>8}   example\n")
        for key, count in sorted(tally.by_code.items(), key=lambda kv: (-kv[1], kv[0])):
            example = tally.code_example[key]
            if len(example) > 90:
                example = example[:87] + "..."
            write(f"  {key:<{width}}{count:>8}   {example}\n")
    if tally.checks:
        title = "failed compliance check"
        width = max(len(title) + 2, *(len(name) + 2 for name in tally.checks))
        write(f"\n  {title:<{width}}{'devices':>8}\n")
        for name, count in sorted(tally.checks.items(), key=lambda kv: (-kv[1], kv[0])):
            write(f"  {name:<{width}}{count:>8}\n")
    if tally.states[OutcomeState.UNKNOWN]:
        write(
            "\nUNKNOWN devices may have spent their OTP: check them (e.g. `pcsid-async status "
            "ACTIVITY_ID`) before renewing them again.\n"
        )
    if out is not None:
        write(f"\nResults: {out} (one JSON line per device)\n")
    stream.flush()


# --- the batch, shared by `renew` and `demo` -------------------------------------------------


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How ``renew``/``demo`` run their batch."""

    concurrency: int
    await_activities: bool = True
    activity_timeout: float | None = 900.0
    activity_interval: float = 2.0
    activity_max_interval: float = 20.0


async def run_batch(
    client: PcsidClient,
    rows: Sequence[DeviceRow],
    *,
    options: BatchOptions,
    tally: Tally,
    progress: Progress,
    out: IO[str] | None,
    secrets: Sequence[str],
) -> None:
    """Renew ``rows`` through ``client.renew_many``; count, write and show each outcome."""
    requests = (
        RenewalRequest(r.device_id, r.otp, vat=r.vat, otp_expires_at=r.otp_expires_at) for r in rows
    )
    tasks = [asyncio.get_running_loop().create_task(progress.run())]
    try:
        async with client:
            outcomes = client.renew_many(
                requests,
                concurrency=options.concurrency,
                await_activities=options.await_activities,
                activity_timeout=options.activity_timeout,
                activity_interval=options.activity_interval,
                activity_max_interval=options.activity_max_interval,
            )
            async with contextlib.aclosing(outcomes):
                async for outcome in outcomes:
                    record = outcome_record(
                        outcome,
                        default_vat=client.vat,
                        secrets=(*secrets, outcome.request.otp),
                    )
                    tally.add(outcome, record)
                    if out is not None:
                        # A short synchronous write per device: flushed so that a crash
                        # keeps every finished device on disk.
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        out.flush()
    finally:
        tally.finished = time.monotonic()
        await _cancel_and_wait(tasks)
        progress.finish()


def estimate_seconds(devices: int, *, rate: float | None, concurrency: int) -> float:
    """How long ``devices`` renewals take: ``max(N / rate, N * latency / concurrency)``."""
    by_rate = devices / rate if rate else 0.0
    return max(by_rate, devices * ASSUMED_LATENCY / concurrency)


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


def _check_deadline(
    rows: Sequence[DeviceRow], *, rate: float | None, concurrency: int, yes: bool
) -> None:
    expiries = [r.otp_expires_at for r in rows if r.otp_expires_at is not None]
    if not expiries:
        return
    now = dt.datetime.now(dt.timezone.utc)
    earliest = min(expiries)
    estimate = estimate_seconds(len(rows), rate=rate, concurrency=concurrency)
    if now + dt.timedelta(seconds=estimate) <= earliest:
        return
    at_rate = f"--rate {rate:g}/s and " if rate else ""
    left = (earliest - now).total_seconds()
    when = (
        f"expired {format_duration(-left)} ago"
        if left < 0
        else f"expires in {format_duration(left)}"
    )
    _confirm(
        f"the batch may not finish before the OTPs expire: {len(rows)} devices at "
        f"{at_rate}--concurrency {concurrency} take about {format_duration(estimate)} "
        f"(estimate, assuming {ASSUMED_LATENCY:g} s per renewal), and the earliest OTP "
        f"{when} ({earliest.isoformat()}). Devices whose OTP has expired are SKIPPED, not sent.",
        yes=yes,
    )


# --- commands ------------------------------------------------------------------------------


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


def _cmd_renew(args: argparse.Namespace) -> int:
    token = _token()
    default_expiry: dt.datetime | None = None
    if args.otp_expires_at:
        default_expiry = parse_timestamp(args.otp_expires_at, "--otp-expires-at")
    elif args.otp_issued_at:
        default_expiry = parse_timestamp(args.otp_issued_at, "--otp-issued-at") + OTP_LIFETIME
    rows = read_devices(Path(args.devices), default_expiry=default_expiry)
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
    _check_deadline(pending, rate=args.rate, concurrency=args.concurrency, yes=args.yes)
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
            )
        )
    except KeyboardInterrupt:
        print_summary(tally, sys.stdout, out=out_path, resumed=resumed)
        print(
            f"pcsid-async: interrupted after {tally.done} of {tally.total} devices"
            + (f"; re-run with --resume to continue {out_path}" if out_path else ""),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print_summary(tally, sys.stdout, out=out_path, resumed=resumed)
    return EXIT_OK if tally.states[OutcomeState.RENEWED] == tally.total else EXIT_NOT_ALL


def status_record(status: ActivityStatus) -> dict[str, Any]:
    """An activity status as a JSON-ready object."""

    def when(value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "activity_id": status.activity_id,
        "activity_type": status.activity_type,
        "state": status.state.value,
        "pcsid_generated": None if status.pcsid_generated is None else status.pcsid_generated.value,
        "created_at": when(status.created_at),
        "updated_at": when(status.updated_at),
        "completed_at": when(status.completed_at),
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "checks": {
            check.value: {"passed": outcome.passed, "messages": list(outcome.messages)}
            for check, outcome in status.checks.items()
        },
        "failed_checks": [c.value for c in status.failed_checks],
        "errors": [
            {"code": e.code, "message": e.message, "source": e.source, "path": e.path}
            for e in status.errors
        ],
    }


def print_status(status: ActivityStatus, stream: IO[str]) -> None:
    """An activity status as a small human table."""
    record = status_record(status)
    counts = "-"
    if status.total_count is not None:
        counts = (
            f"{status.success_count or 0} passed, {status.failure_count or 0} failed "
            f"of {status.total_count}"
        )
    rows = [
        ("activity", record["activity_id"]),
        ("type", record["activity_type"] or "-"),
        ("state", record["state"]),
        ("pcsid", record["pcsid_generated"] or "-"),
        ("checks", counts),
        ("created", record["created_at"] or "-"),
        ("updated", record["updated_at"] or "-"),
        ("completed", record["completed_at"] or "-"),
    ]
    for name, value in rows:
        stream.write(f"{name:<11}{value}\n")
    for check, outcome in status.checks.items():
        text = (
            "passed"
            if outcome.passed
            else "FAILED: " + "; ".join(outcome.messages or (outcome.raw,))
        )
        stream.write(f"  {check.value:<28}{text}\n")
    for error in status.errors:
        stream.write(f"error      {error}\n")


def _cmd_status(args: argparse.Namespace) -> int:
    token = _token()
    vat = args.vat or os.environ.get(VAT_ENV, "").strip()
    if not vat:
        raise UsageError(f"no VAT: pass --vat or set {VAT_ENV}")
    client = _make_client(args, token, vat, timeout=REQUEST_TIMEOUT)
    try:
        check_token_like(args.activity_id, "ACTIVITY_ID")
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None

    def update(status: ActivityStatus) -> None:
        if not args.json and not status.is_terminal:
            print(f"... {status.state.value}", file=sys.stderr, flush=True)

    async def read() -> ActivityStatus:
        async with client:
            if args.wait:
                return await client.await_activity(
                    args.activity_id,
                    timeout=args.timeout,
                    interval=args.interval,
                    max_interval=max(args.interval, 20.0),
                    on_update=update,
                )
            # One read, retries included, within the deadline. (Not also as the request's
            # timeout: aiohttp turns a cancellation that lands with its own timeout into a
            # timeout, which the retries would then ride out.)
            return await asyncio.wait_for(client.get_status(args.activity_id), args.timeout)

    try:
        status = asyncio.run(read())
    except InvalidArgumentError as exc:
        raise UsageError(str(exc)) from None
    except asyncio.TimeoutError:
        print(f"pcsid-async: no answer within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NOT_ALL
    except ActivityTimeoutError as exc:
        print(f"pcsid-async: {scrub(str(exc), (token,))}", file=sys.stderr)
        if exc.last_status is not None:
            _show_status(exc.last_status, as_json=args.json)
        return EXIT_NOT_ALL
    except PcsidError as exc:
        print(f"pcsid-async: {type(exc).__name__}: {scrub(str(exc), (token,))}", file=sys.stderr)
        return EXIT_NOT_ALL
    _show_status(status, as_json=args.json)
    return EXIT_NOT_ALL if status.state is ActivityState.FAILED else EXIT_OK


def _show_status(status: ActivityStatus, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status_record(status), indent=2, ensure_ascii=False))
    else:
        print_status(status, sys.stdout)


# --- demo and fake server -----------------------------------------------------------------

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
    from .testing import FakeClearTax  # noqa: PLC0415

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


def _print_credentials(fake: FakeClearTax, csv_path: Path | None) -> None:
    credentials = fake.sample_credentials()
    lines = [
        f"Fake ClearTax listening on {credentials.url}",
        f"  token: {credentials.token}",
        f"  VAT:   {credentials.vat}",
        "  devices (device_id, otp):",
        *(f"    {device},{otp}" for device, otp in credentials.devices),
    ]
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(REQUIRED_COLUMNS)
            writer.writerows(credentials.devices)
        lines.append(f"  wrote {csv_path}")
    lines += [
        "Try:",
        f"  export {TOKEN_ENV}={credentials.token}",
        f"  pcsid-async renew {csv_path or 'devices.csv'} --out results.jsonl "
        f"--base-url {credentials.url} --vat {credentials.vat}",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)


async def _serve_fake(port: int, devices: int, csv_path: Path | None) -> None:
    from .testing import run_fake_server  # noqa: PLC0415

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
    )


def _cmd_fake_server(args: argparse.Namespace) -> int:
    csv_path = Path(args.write_csv) if args.write_csv else None
    try:
        asyncio.run(_serve_fake(args.port, args.devices, csv_path))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise UsageError(f"cannot serve on port {args.port}: {exc}") from None
    print("Fake ClearTax stopped.", flush=True)
    return EXIT_OK


# --- argument parsing ----------------------------------------------------------------------


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
            "input error, 130 interrupted. Start with: pcsid-async demo"
        ),
    )
    parser.add_argument("--version", action="version", version=f"pcsid-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        "--resume", action="store_true", help="skip devices with an ok line in --out; append"
    )
    renew.add_argument("--yes", action="store_true", help="start even if the OTPs may expire first")
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
    renew.set_defaults(handler=_cmd_renew)

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
    fake.add_argument("--write-csv", metavar="PATH", help="also write the devices as a CSV")
    fake.set_defaults(handler=_cmd_fake_server)
    return parser


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
