"""A raw HTTP/1.1 server on loopback that answers as badly as it is told (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


def gzip_bomb(decoded: int) -> bytes:
    """A valid gzip body of ``decoded`` zero bytes (about a thousandth of that on the wire).

    One mebibyte is deflated once, ended with a full flush (which resets the compressor, so
    the bytes stand alone) and repeated: building a 400 MiB bomb costs milliseconds, not the
    seconds of deflating all of it.
    """
    block = bytes(1024 * 1024)
    count, rest = divmod(decoded, len(block))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the gzip frame is ours
    chunk = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(bytes(rest)) + packer.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, decoded & 0xFFFFFFFF)
    return header + chunk * count + tail + trailer


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Script:
    """A complete answer with the given status, body and extra headers."""

    async def script(writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body)
        await writer.drain()

    return script


def trickle(head: bytes, every: float) -> Script:
    """``head`` a byte at a time, then one byte every ``every`` seconds forever."""

    async def script(writer: asyncio.StreamWriter) -> None:
        for i in range(len(head)):
            writer.write(head[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every)
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(every)

    return script


class HostileServer:
    """Reads each request whole, then runs ``script`` on the connection and closes it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            self._server.close_clients()  # type: ignore[attr-defined]  # 3.13+
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.requests += 1
            await self.script(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
