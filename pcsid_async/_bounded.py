"""Reading an answer's body with a cap on its decoded size.

aiohttp decompresses as it reads (gzip, deflate, br, zstd), in bounded slices fed to the
response's stream, so reading that stream a chunk at a time and stopping at the cap bounds
the memory of any answer, a compressed bomb included: at most the cap plus one chunk.
Time is not this module's concern: the transport's per-attempt deadline covers the read.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final

import aiohttp

from ._errors import ResponseTooLargeError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "check_max_response_bytes",
    "declared_length",
    "read_first",
    "read_rest",
]

# ClearTax's answers are under a few KB; 1 MiB leaves a wide margin for long error lists
# while 200 concurrent bombs stay at a few hundred MB at worst.
DEFAULT_MAX_RESPONSE_BYTES: Final = 1024 * 1024
# Chunks read at a time: aiohttp's own stream chunk size.
_CHUNK: Final = 64 * 1024


def check_max_response_bytes(value: object) -> int:
    """``value`` if it is an int >= 1, else ``ValueError`` (the client words it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("max_response_bytes must be an integer >= 1")
    return value


def declared_length(
    response: aiohttp.ClientResponse, limit: int, *, method: str, path: str
) -> int | None:
    """The body's declared size (``None``: unknown); :class:`ResponseTooLargeError` past ``limit``.

    A ``Content-Length`` over the cap is refused before reading when the body is not
    compressed (a compressed body's length says nothing certain about its decoded size, so
    it counts as unknown).
    """
    length = response.content_length
    if length is not None and response.headers.get("Content-Encoding"):
        return None
    if length is not None and length > limit:
        raise ResponseTooLargeError(
            limit=limit, method=method, path=path, status_code=response.status
        )
    return length


def read_first(response: aiohttp.ClientResponse) -> Awaitable[bytes]:
    """The body's first chunk: await it.

    When its size is the declared length it is the whole body (aiohttp reads no more than
    that); otherwise :func:`read_rest` goes on.
    """
    return response.content.read(_CHUNK)


async def read_rest(
    response: aiohttp.ClientResponse, chunk: bytes, limit: int, *, method: str, path: str
) -> bytes:
    """The body from its first ``chunk`` on, a chunk at a time, stopping past ``limit``."""
    content = response.content
    chunks: list[bytes] = []
    size = 0
    while True:
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError(
                limit=limit, method=method, path=path, status_code=response.status
            )
        chunks.append(chunk)
        chunk = await content.read(_CHUNK)
