"""Reading an answer's body with a cap on its decoded size.

aiohttp decompresses as it reads (gzip, deflate, br, zstd), in bounded slices fed to the
response's stream, so reading that stream a chunk at a time and stopping at the cap bounds
the memory of any answer, a compressed bomb included: at most the cap plus one chunk.
Time is not this module's concern: the transport's per-attempt deadline covers the read.
"""

from __future__ import annotations

from typing import Final

import aiohttp

from ._errors import ResponseTooLargeError

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "check_max_response_bytes", "read_bounded"]

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


async def read_bounded(
    response: aiohttp.ClientResponse, limit: int, *, method: str, path: str
) -> bytes:
    """The whole body of ``response`` (decoded), or :class:`ResponseTooLargeError` past ``limit``.

    A ``Content-Length`` over the cap is refused before reading when the body is not
    compressed (a compressed body's length says nothing certain about its decoded size).
    """
    length = response.content_length
    if length is not None and response.headers.get("Content-Encoding"):
        length = None  # a compressed body's length says nothing certain about its size
    if length is not None and length > limit:
        raise ResponseTooLargeError(
            limit=limit, method=method, path=path, status_code=response.status
        )
    content = response.content
    chunk = await content.read(_CHUNK)
    if length is not None and len(chunk) == length:
        return chunk  # the whole declared body (aiohttp reads no more than that)
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
