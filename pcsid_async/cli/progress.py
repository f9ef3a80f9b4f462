"""Counting a run (Tally) and showing it live (Progress)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from typing import IO, TYPE_CHECKING, Any

from pcsid_async import (
    APIStatusError,
    ErrorDetail,
    OutcomeState,
    RenewalOutcome,
)

if TYPE_CHECKING:
    pass

from ._common import PLAIN_REFRESH, TTY_REFRESH, format_duration


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
        # Keyed by (error codes, state): a 401 run shows FAILED and SKIPPED apart.
        self.by_code: Counter[tuple[str, str]] = Counter()
        self.code_example: dict[tuple[str, str], str] = {}
        self.checks: Counter[str] = Counter()
        self.device_ids: set[str] = set()
        # The activity id (None when unknown) of each UNKNOWN outcome, for the summary's hint.
        self.unknown_activities: list[str | None] = []
        # Seconds each device held a slot (renewal and awaited activity), summed.
        self.device_seconds = 0.0
        self.late_warned = False
        self.started = time.monotonic()
        self.finished: float | None = None

    def add(self, outcome: RenewalOutcome, record: dict[str, Any]) -> None:
        """Count one outcome (``record`` is its JSON object, secrets already removed)."""
        self.done += 1
        self.device_seconds += outcome.elapsed
        self.states[outcome.state] += 1
        self.device_ids.add(outcome.device_id)
        for check in record["failed_checks"]:
            self.checks[check] += 1
        if outcome.ok:
            return
        if outcome.state is OutcomeState.UNKNOWN:
            self.unknown_activities.append(record["activity_id"])
        codes = record["error_codes"]
        key = (",".join(codes) if codes else str(record["error_type"]), outcome.state.value)
        self.by_code[key] += 1
        if key not in self.code_example:
            self.code_example[key] = _example(outcome, record)

    def projected_seconds_left(self, concurrency: int) -> float | None:
        """Seconds left at the measured time per device (None before any outcome)."""
        if not self.done:
            return None
        return (self.total - self.done) * (self.device_seconds / self.done) / concurrency

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
