"""A tiny forward HTTP proxy on loopback that records what it was told.

Plain ``http://`` targets arrive in absolute form (``POST http://host:port/path HTTP/1.1``):
the proxy forwards each one on a fresh upstream connection with ``Connection: close`` and
relays the answer, then closes the client's connection. ``CONNECT host:port`` (an https
target) opens a blind tunnel: the proxy then sees only encrypted bytes. Every request head the
proxy read is kept in ``seen``; with ``credentials`` set, a request without the matching
``Proxy-Authorization`` gets 407.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import urlsplit

import attrs

__all__ = ["ForwardProxy", "ProxySeen"]


@attrs.frozen
class ProxySeen:
    """One request head the proxy read (a proxied request or a CONNECT)."""

    method: str
    target: str
    headers: dict[str, str]


class ForwardProxy:
    """``async with ForwardProxy() as proxy``: ``proxy.url`` to configure, ``proxy.seen``."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.seen: list[ProxySeen] = []
        self._expected: str | None = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self._expected = f"Basic {token}"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines if line)
            self.seen.append(ProxySeen(method, target, headers))
            lower = {k.lower(): v for k, v in headers.items()}
            if self._expected is not None and lower.get("proxy-authorization") != self._expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
                writer.write(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
                return
            body = await reader.readexactly(int(lower.get("content-length", "0")))
            await self._forward(method, target, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _forward(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        assert parts.hostname is not None
        assert parts.port is not None
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
        kept = {
            k: v
            for k, v in headers.items()
            if not k.lower().startswith("proxy-") and k.lower() != "connection"
        }
        lines = [f"{method} {parts.path or '/'} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in kept.items()]
        lines += ["Connection: close", "", ""]
        up_writer.write("\r\n".join(lines).encode("latin-1") + body)
        await up_writer.drain()
        answer = await up_reader.read()
        up_writer.close()
        await up_writer.wait_closed()
        writer.write(answer)
        await writer.drain()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
