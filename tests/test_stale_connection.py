"""Keep-alive connections the server ends between requests, without ``Connection: close``.

A raw server answers the first POST of its first connection with keep-alive, then ends that
connection in one of four ways; it counts the POST bodies it received whole and every byte
that arrived on the ended connection after the answer (the referee). A POST of which the
server received nothing must be sent again and succeed; one of which it received bytes must
stay "may have been processed" (UNKNOWN in a batch); none is ever sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from types import SimpleNamespace

import aiohttp
import pytest
from _hostile_server import HostileServer, answer

from pcsid_async import APIConnectionError, OutcomeState, PcsidClient, RetryPolicy
from pcsid_async._stale import ONE_WRITE, peer_ended, refused_unsent

TOKEN = "tok-stale-0123456789"
VAT = "300000000000003"
OTP = "123456"
FIRST = "0f8fad5b-d9cb-469f-a165-70867728950e"
SECOND = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.002)


class StaleServer(HostileServer):
    """HTTP/1.1 with keep-alive; ends its first connection after the first answer per ``mode``.

    ``immediately``: half-closes in the same step as the answer (FIN right behind it).
    ``paused``: half-closes once ``release`` is set (the client is idle by then).
    ``midway``: reads 16 bytes of the next request, then resets the connection.
    """

    def __init__(self, mode: str) -> None:
        super().__init__(answer(200, b""))  # its url and lifecycle; _handle is our own
        self.mode = mode
        self.bodies: list[str] = []  # device ids of the POST bodies received whole
        self.stray = 0  # bytes received on the ended connection after its answer
        self.release = asyncio.Event()
        self.closed = asyncio.Event()
        self.done = asyncio.Event()  # the ended connection's handler has finished
        self._connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        first = self._connections == 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed an idle connection
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                device = json.loads(await reader.readexactly(length))["DeviceId"]
                self.bodies.append(device)
                body = json.dumps({"Status": "GENERATED", "DeviceId": device, "ErrorList": []})
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )
                if first:
                    await self._end(reader, writer)
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if first:
                self.done.set()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _end(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "midway":
            await writer.drain()
            self.stray += len(await reader.readexactly(16))
            writer.transport.abort()
            self.closed.set()
            return
        if self.mode == "paused":
            await writer.drain()
            await self.release.wait()
        # The answer went out with write() (small: straight to the socket); FIN follows now.
        writer.write_eof()  # a half-close on asyncio's loop and uvloop alike
        self.closed.set()
        while chunk := await reader.read(65536):  # until the client drops its end
            self.stray += len(chunk)


def client_for(server: StaleServer, **kwargs: object) -> PcsidClient:
    return PcsidClient(TOKEN, VAT, base_url=server.url, retry=FAST, timeout=2, **kwargs)  # type: ignore[arg-type]


async def ended(server: StaleServer) -> None:
    await asyncio.wait_for(server.done.wait(), 2)


class TestNothingReceived:
    """The server ended the connection before any of the next POST reached it: sent again."""

    @pytest.mark.parametrize("mode", ["immediately", "paused"])
    async def test_renew_gets_its_answer(self, mode: str) -> None:
        async with StaleServer(mode) as server, client_for(server) as client:
            first = await client.renew(FIRST, OTP)
            server.release.set()
            await asyncio.wait_for(server.closed.wait(), 2)
            second = await client.renew(SECOND, OTP)
        await ended(server)
        assert (first.device_id, second.device_id) == (FIRST, SECOND)
        assert server.bodies == [FIRST, SECOND]  # each POST received once
        assert server.stray == 0

    @pytest.mark.parametrize("mode", ["immediately", "paused"])
    async def test_batch_reports_renewed(self, mode: str) -> None:
        async with StaleServer(mode) as server, client_for(server) as client:
            await client.renew(FIRST, OTP)
            server.release.set()
            await asyncio.wait_for(server.closed.wait(), 2)
            outcomes = [o async for o in client.renew_many([(SECOND, OTP)])]
        await ended(server)
        assert [(o.device_id, o.state) for o in outcomes] == [(SECOND, OutcomeState.RENEWED)]
        assert server.bodies == [FIRST, SECOND]
        assert server.stray == 0

    @pytest.mark.skipif(not ONE_WRITE, reason="aiohttp < 3.12 writes headers apart")
    async def test_connection_ended_after_hand_over(self) -> None:
        """Ended after aiohttp took the connection, before it writes (a trace callback waits).

        On Python 3.12+ aiohttp then writes at once, is refused ("Cannot write to closing
        transport"): provably not sent, sent again. Before 3.12 it defers the write and
        reports only "server disconnected", which proves nothing: it stays "may have been
        processed" (honest, if pessimistic), and is not sent again.
        """
        calls = 0
        server = StaleServer("paused")

        async def end_it_now(*_: object) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:  # the second POST, on the pooled connection
                server.release.set()
                await asyncio.wait_for(server.closed.wait(), 2)
                await asyncio.sleep(0.01)  # the client's loop reads the FIN meanwhile

        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(end_it_now)
        async with server, client_for(server, trace_configs=[tracing]) as client:
            await client.renew(FIRST, OTP)
            if sys.version_info >= (3, 12):
                second = await client.renew(SECOND, OTP)
                assert second.device_id == SECOND
                assert calls == 3  # refused on the ended connection, then sent on a new one
                assert server.bodies == [FIRST, SECOND]
            else:
                with pytest.raises(APIConnectionError) as info:
                    await client.renew(SECOND, OTP)
                assert info.value.may_have_reached_server
                assert calls == 2
                assert server.bodies == [FIRST]
            await ended(server)
        assert server.stray == 0


class TestBytesReceived:
    """The server read part of the next POST, then reset: it may have been processed."""

    async def test_renew_raises_may_have_been_processed(self) -> None:
        async with StaleServer("midway") as server, client_for(server) as client:
            await client.renew(FIRST, OTP)
            with pytest.raises(APIConnectionError) as info:
                await client.renew(SECOND, OTP)
        await ended(server)
        assert info.value.may_have_reached_server
        assert "may have been processed" in str(info.value)
        assert OTP not in str(info.value)
        assert server.stray == 16
        assert server.bodies == [FIRST]  # never sent again

    async def test_batch_reports_unknown(self) -> None:
        async with StaleServer("midway") as server, client_for(server) as client:
            await client.renew(FIRST, OTP)
            outcomes = [o async for o in client.renew_many([(SECOND, OTP)])]
        await ended(server)
        assert [(o.device_id, o.state) for o in outcomes] == [(SECOND, OutcomeState.UNKNOWN)]
        assert server.stray == 16
        assert server.bodies == [FIRST]


class TestRefusalProof:
    def test_only_aiohttps_refusal_counts(self) -> None:
        refused = aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        wrapped = aiohttp.ClientConnectionError("Failed to send bytes")
        wrapped.__cause__ = refused
        assert refused_unsent(wrapped) is ONE_WRITE
        assert not refused_unsent(aiohttp.ClientConnectionResetError("Connection lost"))
        assert not refused_unsent(aiohttp.ServerDisconnectedError())
        looped = aiohttp.ClientConnectionError("a cycle")
        looped.__context__ = looped
        assert not refused_unsent(looped)

    def test_peer_ended_without_a_socket_leaves_it_to_aiohttp(self) -> None:
        protocol = SimpleNamespace(is_connected=lambda: True)
        transport = SimpleNamespace(get_extra_info=lambda name: None)
        connection = SimpleNamespace(protocol=protocol, transport=transport)
        assert not peer_ended(connection)  # type: ignore[arg-type]
        gone = SimpleNamespace(protocol=None, transport=None)
        assert peer_ended(gone)  # type: ignore[arg-type]
        odd = SimpleNamespace(fileno=lambda: -1)  # a descriptor select() cannot take
        transport = SimpleNamespace(get_extra_info=lambda name: odd)
        connection = SimpleNamespace(protocol=protocol, transport=transport)
        assert not peer_ended(connection)  # type: ignore[arg-type]
