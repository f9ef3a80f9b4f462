"""The journal's run lock: an exclusive, non-blocking lock on an open file.

``flock`` on POSIX (released by the kernel when the process dies), ``msvcrt.locking`` on
Windows.
"""

from __future__ import annotations

import sys
from typing import IO

if sys.platform == "win32":  # pragma: no cover - CI's tests run on Linux
    import msvcrt

    def lock(handle: IO[bytes]) -> bool:
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def lock(handle: IO[bytes]) -> bool:
        """Take an exclusive, non-blocking lock on ``handle``; ``False`` if another holds it."""
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


__all__ = ["lock"]
