"""Per-call options: ``with_options``, a view of a client with another timeout or retry policy.

A view (``client.with_options(timeout=..., retry=...)``) is a second client object over the
same connection pool: it shares its parent's session, concurrency gate, pacer (rate limit and
``Retry-After`` pauses), deadlines and closed state, and differs only in the per-attempt
timeout and the retry policy. Making one costs a dict copy and two retriers: no session, no
connector. A view has no lifecycle of its own: closing it does nothing; closing the parent
closes every view.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp

from ._config import RetryPolicy
from ._errors import InvalidArgumentError
from ._transport import Transport
from ._validate import check_positive

if TYPE_CHECKING:
    from ._client import PcsidClient

__all__ = ["UNSET", "TransportView", "Unset", "with_options"]


class Unset(enum.Enum):
    """The type of :data:`UNSET`: an option that was not given (``None`` means "no limit")."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET

# What the view takes from its parent at every use, never a copy: created lazily, or changing.
_SHARED: Final = ("_session", "_loop", "_deadlines", "_closed")


class TransportView(Transport):
    """A :class:`Transport` sharing its parent's session and pacing, with its own options."""

    _parent: Transport

    def __init__(self, parent: Transport, *, timeout: float | None, retry: RetryPolicy) -> None:
        """Build the view; no I/O (the parent's session is created on first use, as ever)."""
        while isinstance(parent, TransportView):
            parent = parent._parent
        state = {k: v for k, v in vars(parent).items() if k not in _SHARED}
        vars(self).update(state)
        self._parent = parent
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.set_policy(retry)

    # The parent's live state, read through (properties win over instance attributes).
    @property
    def _session(self) -> aiohttp.ClientSession | None:  # type: ignore[override]
        return self._parent._session

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:  # type: ignore[override]
        return self._parent._loop

    @property
    def _deadlines(self) -> Any:  # type: ignore[override]
        return self._parent._deadlines

    @property
    def _closed(self) -> bool:  # type: ignore[override]
        return self._parent._closed

    def _get_session(self) -> aiohttp.ClientSession:
        return self._parent._get_session()

    async def close(self) -> None:
        """Do nothing: the session is the parent's, and closes with it."""


_V = TypeVar("_V", bound="PcsidClient")


def with_options(  # noqa: D417 (self: the client; bound in _client)
    self: _V,
    *,
    timeout: float | Unset | None = UNSET,
    retry: RetryPolicy | Unset = UNSET,
) -> _V:
    """A view of this client with another per-attempt timeout or retry policy.

    Cheap (no new session): the view shares this client's connections, concurrency
    gate, rate limit, ``Retry-After`` pauses and hooks. It has no lifecycle of its own:
    closing it does nothing, and it is closed when this client is::

        slow = client.with_options(timeout=120.0, retry=RetryPolicy(max_attempts=1))
        await slow.renew(device_id, otp)

    Args:
        timeout: seconds per attempt, or ``None`` for no limit; default: this client's.
        retry: the :class:`RetryPolicy`; default: this client's.

    """
    new_timeout = self._timeout
    if not isinstance(timeout, Unset):
        new_timeout = check_positive(timeout, "timeout", allow_none=True)
    new_retry = self._retry
    if not isinstance(retry, Unset):
        if not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError("retry must be a RetryPolicy")
        new_retry = retry
    view = object.__new__(type(self))
    vars(view).update(vars(self))
    view._timeout, view._retry = new_timeout, new_retry
    view._transport = TransportView(self._transport, timeout=new_timeout, retry=new_retry)
    return view
