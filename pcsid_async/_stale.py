"""Stale keep-alive connections: spot them before a request is written, and prove "not sent".

A server may close a kept-alive connection right after answering, without
``Connection: close``. Until the event loop reads that end of stream, aiohttp still holds
the connection as reusable, and a POST handed it would fail with nothing to tell whether
the server saw it. Two checks make the report honest instead of pessimistic:

* :func:`peer_ended`, before anything of a request is written: a pooled connection whose
  socket is already readable has been ended by the peer (end of stream, a reset, or bytes
  no request asked for). It is dropped and another connection used; as none of the
  request went out, dropping it cannot cause a double send.
* :func:`refused_unsent`, after a failure: aiohttp never writes to a transport that is
  closing; it raises ``ClientConnectionResetError("Cannot write to closing transport")``
  instead of calling ``transport.write``. Since aiohttp 3.12 a request with a ``bytes``
  body (or none) is written in one call, headers and body together, so that refusal
  means not one byte of the request was handed to the transport. With older aiohttp the
  headers go out first, so the refusal proves nothing and the request may have reached.
"""

from __future__ import annotations

import re
import select
from typing import Final

import aiohttp
from aiohttp.connector import Connection

__all__ = ["descriptor", "peer_ended", "readable", "refused_unsent"]

_REFUSED: Final = "Cannot write to closing transport"


def _one_write() -> bool:
    found = re.match(r"(\d+)\.(\d+)", aiohttp.__version__)
    return found is not None and (int(found[1]), int(found[2])) >= (3, 12)


# Whether this aiohttp writes a bytes-bodied request in a single call (headers coalesced).
ONE_WRITE: Final = _one_write()


def peer_ended(connection: Connection) -> bool:
    """Whether an idle pooled connection was already closed, reset or spoken on by the peer."""
    protocol = connection.protocol
    if protocol is None or not protocol.is_connected():
        return True
    return readable(descriptor(connection))


def descriptor(connection: Connection) -> int | None:
    """The connection's socket's file descriptor, if it has one to look at."""
    transport = connection.transport
    sock = None if transport is None else transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def readable(fd: int | None) -> bool:
    """Whether an idle connection's socket has something to read: an end, a reset, stray bytes.

    ``None`` (nothing to look at) and a descriptor select cannot take are left to aiohttp.
    Idle HTTP/1.1 means the server has nothing to say: readable is an end, never a reply.
    """
    if fd is None:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(ready)


def refused_unsent(exc: BaseException) -> bool:
    """Whether ``exc`` shows aiohttp refused the request's one write: nothing was sent."""
    return ONE_WRITE and _refusal_in_chain(exc)


def _refusal_in_chain(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectionResetError) and str(current) == _REFUSED:
            return True
        current = current.__cause__ or current.__context__
    return False
