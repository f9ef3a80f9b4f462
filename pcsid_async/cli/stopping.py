"""SIGINT and SIGTERM during a batch: stop starting devices, a grace period, then stop.

The first signal stops pulling new devices and gives the requests in flight ``--grace``
seconds to finish (their outcomes are recorded as usual); when the grace is over the batch is
cancelled. A second signal cancels at once. Either way the run then records what it can, the
journal marks what was still in flight as interrupted (UNKNOWN), the summary is printed and
the exit code is 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Final

EXIT_TERMINATED: Final = 143
_EXIT_BY_SIGNAL: Final = {signal.SIGINT: 130, signal.SIGTERM: EXIT_TERMINATED}


class Stopper:
    """Signal handlers for one batch (installed by ``install``, removed by ``remove``)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.signum: int | None = None
        self.cancelled = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._installed: list[int] = []

    @property
    def stopping(self) -> bool:
        """Whether a signal asked the run to stop (no new device is started)."""
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        """130 after SIGINT, 143 after SIGTERM, ``None`` without a signal."""
        return None if self.signum is None else _EXIT_BY_SIGNAL[signal.Signals(self.signum)]

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in the running loop (where the platform allows)."""
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for signum in _EXIT_BY_SIGNAL:
            # Not on Windows, nor outside the main thread: Ctrl-C then raises as before.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._handle, signum)
                self._installed.append(signum)

    def remove(self) -> None:
        """Restore the default handlers and drop a pending grace timer."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()

    def _handle(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f"pcsid-async: {name} again: stopping now", file=sys.stderr, flush=True)
            self._cancel()
            return
        self.signum = signum
        print(
            f"pcsid-async: {name}: starting no new device; the requests in flight have "
            f"{self.grace:g} s to finish (send the signal again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        self._timer = asyncio.get_running_loop().call_later(self.grace, self._cancel)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.cancelled and self._task is not None:
            self.cancelled = True
            self._task.cancel()
