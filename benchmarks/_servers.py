"""Benchmark servers, each run in its own process so the client's CPU is measured alone.

Three kinds, all on 127.0.0.1 with a port picked by the OS:

``fixed``
    A minimal ``aiohttp.web`` server that answers ``pcsid-status`` with the contract's
    canonical SUCCEEDED activity body and ``renew-pcsid`` with a GENERATED body, after an
    optional ``--latency``. It does no bookkeeping, so it is the cheapest honest server.
``activities``
    As minimal, for the polling scenario: activities created by a command answer IN_PROGRESS
    until ``delay`` seconds after their creation, then the canonical SUCCEEDED body; the
    server records the arrival time (its ``time.monotonic()``) of every poll of each.
``fake``
    ``pcsid_async.testing.FakeClearTax`` with ``any_otp``, ``auto_register`` and the request
    log off: the independent referee, used where server-side state matters (activities that
    finish a fixed time after creation, polls counted per activity).

Run as a script, a server prints one JSON line ``{"url", "token", "vat"}`` when it listens,
then reads JSON commands, one per line, on stdin and answers each with one JSON line on
stdout. It exits when stdin closes, so it never outlives the harness (even one killed with
SIGKILL). It ignores SIGINT: on Ctrl-C the harness shuts it down from a ``finally``.

``activities`` commands: ``{"cmd": "activities", "n": 200, "delay": 1.0}`` answers ``{"ids",
"created"}`` (all created at ``created``, done at ``created + delay``); ``{"cmd": "polls",
"ids": [...]}`` answers ``{"arrivals": [[t, ...], ...], "done": [t, ...]}`` and forgets them.

Commands: ``{"cmd": "arrivals"}`` (``fixed``): the server's ``time.monotonic()`` at the
arrival of each renewal since the last such command. ``fake`` only, besides ``ping``:

``{"cmd": "activities", "n": 2000, "delay": 1.0}``
    Create ``n`` activities directly on the server (no HTTP) that turn SUCCEEDED ``delay``
    seconds after creation; answers ``{"ids": [...], "created": <time.monotonic()>}`` with
    the creation time of the first one (CLOCK_MONOTONIC is system-wide, so the client can
    measure from it).
``{"cmd": "polls", "ids": [...]}``
    Answers ``{"polls": [...], "states": [...]}``: the status requests each activity got.
``{"cmd": "counts"}``
    Answers the fake's request counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

API_PREFIX = "/middle-east/ksa/einvoicing"
TOKEN = "bench-token"
VAT = "300000000000003"

# The contract's canonical SUCCEEDED activity (cleartax-pcsid.md, "Get PCSID generation status").
CANONICAL_ACTIVITY = json.dumps(
    {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": "SUCCEEDED",
        "CreatedAt": "2026-11-22T10:15:30.120Z",
        "UpdatedAt": "2026-11-22T10:15:41.906Z",
        "CompletedAt": "2026-11-22T10:15:41.906Z",
        "RequestMetaInfo": {"TotalCount": 6, "SuccessCount": 6, "FailureCount": 0},
        "ResponseInfo": {
            "ResponseMetaData": {
                "PcsidGenerated": "GENERATED",
                "StandardTaxInvoice": "SUCCEEDED",
                "StandardTaxInvoiceCredit": "SUCCEEDED",
                "StandardTaxInvoiceDebit": "SUCCEEDED",
                "SimplifiedTaxInvoice": "SUCCEEDED",
                "SimplifiedTaxInvoiceCredit": "SUCCEEDED",
                "SimplifiedTaxInvoiceDebit": "SUCCEEDED",
            }
        },
        "ErrorList": [],
    },
    separators=(",", ":"),
).encode()
RENEWED = json.dumps(
    {
        "Status": "GENERATED",
        "DeviceId": "eb645fd8-ee2e-4bdd-82b6-b69c91c9178d",
        "ErrorList": [],
    },
    separators=(",", ":"),
).encode()


ARRIVALS: list[float] = []  # time.monotonic() of each renewal's arrival (``arrivals`` command)


def fixed_app(latency: float) -> web.Application:
    """The ``fixed`` server: canonical bodies after ``latency`` seconds, nothing else."""

    async def status(request: web.Request) -> web.Response:
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=CANONICAL_ACTIVITY, content_type="application/json")

    async def renew(request: web.Request) -> web.Response:
        ARRIVALS.append(time.monotonic())
        await request.read()
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=RENEWED, content_type="application/json")

    app = web.Application()
    app.router.add_get(API_PREFIX + "/onboarding/{activity_id}/pcsid-status", status)
    app.router.add_post(API_PREFIX + "/onboarding/renew-pcsid", renew)
    return app


IN_PROGRESS_ACTIVITY = json.dumps(
    {
        "ActivityType": "ZATCA_COMPLIANCE_INVOICE",
        "Status": "IN_PROGRESS",
        "CreatedAt": "2026-11-22T10:15:30.120Z",
        "UpdatedAt": "2026-11-22T10:15:30.120Z",
        "CompletedAt": None,
        "RequestMetaInfo": {"TotalCount": 6, "SuccessCount": 0, "FailureCount": 0},
        "ResponseInfo": {"ResponseMetaData": None},
        "ErrorList": [],
    },
    separators=(",", ":"),
).encode()

# activity id -> [done_at, arrival, arrival, ...] (``activities`` server)
ACTIVITIES: dict[str, list[float]] = {}
CREATED = [0]  # activities created so far: the next id


def activities_app() -> web.Application:
    """The ``activities`` server: IN_PROGRESS until each activity's time, every poll recorded."""

    async def status(request: web.Request) -> web.Response:
        now = time.monotonic()
        record = ACTIVITIES.get(request.match_info["activity_id"])
        if record is None:
            return web.Response(status=404)
        record.append(now)
        body = CANONICAL_ACTIVITY if now >= record[0] else IN_PROGRESS_ACTIVITY
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(API_PREFIX + "/onboarding/{activity_id}/pcsid-status", status)
    return app


def activities_command(command: dict[str, Any]) -> dict[str, Any]:
    """Create activities, or hand back (and forget) their polls' arrival times."""
    if command["cmd"] == "activities":
        created = time.monotonic()
        ids = [f"{CREATED[0] + i:024x}" for i in range(command["n"])]
        CREATED[0] += command["n"]
        for activity_id in ids:
            ACTIVITIES[activity_id] = [created + command["delay"]]
        return {"ids": ids, "created": created}
    if command["cmd"] == "polls":
        records = [ACTIVITIES.pop(activity_id) for activity_id in command["ids"]]
        return {"arrivals": [r[1:] for r in records], "done": [r[0] for r in records]}
    return {"ok": True}


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _commands(handle: Any) -> None:
    """Answer stdin commands until stdin closes (the harness is done, or gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        _emit(handle(command))


def fixed_command(command: dict[str, Any]) -> dict[str, Any]:
    """``{"cmd": "arrivals"}``: the renewals' arrival times so far (then forgotten)."""
    if command["cmd"] == "arrivals":
        times = ARRIVALS[:]
        ARRIVALS.clear()
        return {"arrivals": times}
    return {"ok": True}


async def serve(kind: str, latency: float) -> None:
    """Serve until stdin closes."""
    if kind in ("fixed", "activities"):
        app = fixed_app(latency) if kind == "fixed" else activities_app()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        _emit({"url": f"http://127.0.0.1:{port}{API_PREFIX}", "token": TOKEN, "vat": VAT})
        try:
            await _commands(fixed_command if kind == "fixed" else activities_command)
        finally:
            await runner.cleanup()
        return

    from pcsid_async.testing import FakeClearTax

    fake = FakeClearTax(
        token=TOKEN,
        vats=(VAT,),
        latency=latency,
        any_otp=True,
        auto_register=True,
        record_requests=False,
    )

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        if cmd == "activities":
            created = time.monotonic()
            ids = [fake.create_activity(delay=command["delay"]) for _ in range(command["n"])]
            return {"ids": ids, "created": created}
        if cmd == "polls":
            views = [fake.activity(activity_id) for activity_id in command["ids"]]
            return {"polls": [v.polls for v in views], "states": [v.state for v in views]}
        if cmd == "counts":
            return {"counts": {e: fake.count(e) for e in ("renew", "status")}}
        return {"ok": True}

    async with fake:
        _emit({"url": fake.url, "token": TOKEN, "vat": VAT})
        await _commands(handle)


class ServerProcess:
    """A benchmark server in a child process; use as a context manager.

    The child is always stopped on exit (closing its stdin, then terminate, then kill),
    including on Ctrl-C and on errors in the measured code.
    """

    def __init__(self, kind: str, *, latency: float = 0.0) -> None:
        self.kind = kind
        self.latency = latency
        self._proc: subprocess.Popen[str] | None = None
        self.url = self.token = self.vat = ""

    @classmethod
    def attached(cls, url: str, token: str, vat: str) -> ServerProcess:
        """A handle on a server another process started (no process of its own to stop)."""
        server = cls("attached")
        server.url, server.token, server.vat = url, token, vat
        return server

    def __enter__(self) -> ServerProcess:
        argv = [sys.executable, str(Path(__file__).resolve()), self.kind, str(self.latency)]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            ready = self._read()
        except BaseException:
            self.stop()
            raise
        self.url, self.token, self.vat = ready["url"], ready["token"], ready["vat"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark server {self.kind!r} exited before answering")
        result: dict[str, Any] = json.loads(line)
        return result

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command and return the server's answer."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        """Stop the child; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    """``python _servers.py {fixed,activities,fake} LATENCY``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("fixed", "activities", "fake"))
    parser.add_argument("latency", type=float, nargs="?", default=0.0)
    args = parser.parse_args()
    # The harness stops this process from its finally block (closing stdin); a Ctrl-C in the
    # terminal must not kill it first, or the harness would see a dead server mid-run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve(args.kind, args.latency))


if __name__ == "__main__":
    main()
