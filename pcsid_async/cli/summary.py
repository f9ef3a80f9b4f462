"""The end-of-run summary tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

from pcsid_async import OutcomeState
from pcsid_async._hints import hint_for

from ._common import format_duration
from .progress import Tally


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
        width = max(len(title) + 2, *(len(code) + 2 for code, _ in tally.by_code))
        write(f"\n  {title:<{width}}{'state':<10}{'devices':>8}   example\n")
        for (code, state_name), count in sorted(
            tally.by_code.items(), key=lambda kv: (-kv[1], kv[0])
        ):
            example = tally.code_example[code, state_name]
            if len(example) > 90:
                example = example[:87] + "..."
            write(f"  {code:<{width}}{state_name:<10}{count:>8}   {example}\n")
        _code_hints(sorted({code for code, _ in tally.by_code}), write)
    if tally.checks:
        title = "failed compliance check"
        width = max(len(title) + 2, *(len(name) + 2 for name in tally.checks))
        write(f"\n  {title:<{width}}{'devices':>8}\n")
        for name, count in sorted(tally.checks.items(), key=lambda kv: (-kv[1], kv[0])):
            write(f"  {name:<{width}}{count:>8}\n")
    _unknown_hint(tally, write)
    if out is not None:
        write(f"\nResults: {out} (one JSON line per device)\n")
    stream.flush()


def _unknown_hint(tally: Tally, write: Callable[[str], object]) -> None:
    """What to do about UNKNOWN devices, fitting what is known of each."""
    with_id = [a for a in tally.unknown_activities if a is not None]
    without = len(tally.unknown_activities) - len(with_id)
    if not tally.unknown_activities:
        return
    write("\nUNKNOWN devices may have spent their OTP: check them before renewing them again.\n")
    if with_id:
        write(f"  {len(with_id)} have an activity id: e.g. `pcsid-async status {with_id[0]}`\n")
    if without:
        write(
            f"  {without} have no activity id (the answer was lost): check each device in the "
            "Fatoora portal or with ClearTax before renewing it again\n"
        )


def _code_hints(codes: list[str], write: Callable[[str], object]) -> None:
    """What to do about each error code the catalogue knows (``PcsidError.hint``'s text)."""
    hints = [(code, hint) for code in codes if (hint := hint_for([code])) is not None]
    if hints:
        write("\n  what to do, by error code\n")
        for code, hint in hints:
            write(f"  {code}: {hint}\n")
