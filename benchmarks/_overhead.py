"""Scenario 1: client CPU per call, SDK against hand-written aiohttp and httpx loops.

Zero-latency ``fixed`` server. Baselines: one shared ``aiohttp.ClientSession`` (connector
limit = concurrency, the SDK's aiohttp timer cost: ``RAW_TIMEOUT``), ``session.get``/``post``
then ``await resp.json()`` (the standard library's ``json``, as the SDK); and a hand-written
``httpx.AsyncClient`` loop (same connection limit, no timeout). Each repetition opens every
client in one event loop and alternates between them in rounds of ``overhead_chunk`` calls;
a ratio is the median over the rounds of each round's pair (the sides ran back to back), so
a slow or fast spell of the shared machine moves it little (see ``figures``).
Pairs: get_status (SDK, raw, httpx), renew (SDK, raw, POST), and get_status again on uvloop
(SDK, raw).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _scenarios import (
    ACTIVITY_ID,
    OTP,
    RAW_TIMEOUT,
    Config,
    median,
    median_interval,
    raw_headers,
    sdk_client,
    workers,
)
from _servers import ServerProcess


def new_loop(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory: ``asyncio`` or ``uvloop``."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


SLOW_SIDES = {"httpx": 10}  # sides so much dearer that they make 1/10 of the calls per round


async def interleave(
    sides: dict[str, Callable[[], Awaitable[None]]], conc: int, rounds: int, chunk: int
) -> dict[str, Any]:
    """CPU per call of each side, overall and per round, over ``rounds`` rounds.

    The order rotates each round, so within a round the sides run back to back and share
    the machine's speed of that moment; ``rounds`` holds each round's CPU per call.
    """
    for one in sides.values():  # warm-up: every connection open, code paths hot
        await workers(conc, conc * 4, one)
    per_round: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for k in range(rounds):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            calls = chunk // SLOW_SIDES.get(name, 1)
            c = time.process_time()
            await workers(conc, calls, sides[name])
            per_round[name].append((time.process_time() - c) / calls)
    return {
        **{name: sum(values) / len(values) for name, values in per_round.items()},
        "rounds": per_round,
    }


def round_ratios(samples: list[dict[str, Any]], a: str, b: str) -> list[float]:
    """``a`` / ``b`` CPU per call, one ratio per round of every repetition (back to back)."""
    return [x / y for s in samples for x, y in zip(s["rounds"][a], s["rounds"][b], strict=True)]


def figures(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The ratios and CPU per call (µs) of each pair.

    A ratio is the median of its round pairs' ratios (``round_ratios``): a spell of the
    shared machine lands in a round or two and moves the median little, while in a sum it
    bills whichever side ran then. The ratio of the repetitions' totals is kept beside it
    (``*_of_totals``) for comparison.
    """

    def of_totals(name: str, a: str, b: str) -> float:
        return median([s[a] / s[b] for s in samples[name]])

    def per_call(name: str, side: str) -> float:
        return median([s[side] for s in samples[name]]) * 1e6

    ratios: dict[str, Any] = {}
    for key, name in (
        ("cpu_ratio", "get"),
        ("renew_cpu_ratio", "renew"),
        ("uvloop_cpu_ratio", "uvloop"),
    ):
        rounds = round_ratios(samples[name], "sdk", "raw")
        ratios[key], ratios[f"{key}_interval"] = median(rounds), median_interval(rounds)
    return {
        **ratios,
        "cpu_ratio_of_totals": of_totals("get", "sdk", "raw"),
        "renew_cpu_ratio_of_totals": of_totals("renew", "sdk", "raw"),
        "uvloop_cpu_ratio_of_totals": of_totals("uvloop", "sdk", "raw"),
        "vs_httpx": median(round_ratios(samples["get"], "sdk", "httpx")),
        "sdk_cpu_per_request_us": per_call("get", "sdk"),
        "raw_cpu_per_request_us": per_call("get", "raw"),
        "httpx_cpu_per_request_us": per_call("get", "httpx"),
        "sdk_renew_cpu_us": per_call("renew", "sdk"),
        "raw_renew_cpu_us": per_call("renew", "raw"),
        "uvloop_sdk_cpu_us": per_call("uvloop", "sdk"),
        "uvloop_raw_cpu_us": per_call("uvloop", "raw"),
    }


def overhead(cfg: Config) -> dict[str, Any]:
    """Client CPU per call, SDK against hand-written loops (module docstring), interleaved."""
    import httpx

    n, conc, chunk = cfg.overhead_requests, cfg.overhead_concurrency, cfg.overhead_chunk
    rounds = max(2, n // chunk)

    with ServerProcess("fixed") as server:
        url = f"{server.url}/onboarding/{ACTIVITY_ID}/pcsid-status"
        renew_url = f"{server.url}/onboarding/renew-pcsid"
        headers = raw_headers(server)
        body = {"DeviceId": "00000000-0000-4000-8000-000000000001", "Otp": OTP}

        async def repetition(kind: str, with_httpx: bool) -> dict[str, Any]:
            async with (
                sdk_client(server, conc) as client,
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=conc), timeout=RAW_TIMEOUT
                ) as session,
                httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
                    timeout=None,
                ) as hx,
            ):

                async def sdk_get() -> None:
                    assert (await client.get_status(ACTIVITY_ID)).succeeded

                async def raw_get() -> None:
                    async with session.get(url, headers=headers) as resp:
                        assert (await resp.json())["Status"] == "SUCCEEDED"

                async def httpx_get() -> None:
                    resp = await hx.get(url, headers=headers)
                    assert json.loads(resp.content)["Status"] == "SUCCEEDED"

                async def sdk_renew() -> None:
                    assert (await client.renew(body["DeviceId"], OTP)).status is not None

                async def raw_renew() -> None:
                    async with session.post(renew_url, json=body, headers=headers) as resp:
                        assert (await resp.json())["Status"] == "GENERATED"

                if kind == "renew":
                    sides = {"sdk": sdk_renew, "raw": raw_renew}
                else:
                    sides = {"sdk": sdk_get, "raw": raw_get}
                    if with_httpx:
                        sides["httpx"] = httpx_get
                return await interleave(sides, conc, rounds, chunk)

        pairs = {"get": ("asyncio", True), "renew": ("asyncio", False), "uvloop": ("uvloop", False)}
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in pairs}
        for _ in range(cfg.overhead_reps):
            for name, (loop, with_httpx) in pairs.items():
                gc.collect()
                kind = "renew" if name == "renew" else "get"
                with asyncio.Runner(loop_factory=new_loop(loop)) as runner:
                    samples[name].append(runner.run(repetition(kind, with_httpx)))
    return {
        **figures(samples),
        "raw_aiohttp_timeout": str(RAW_TIMEOUT),
        "requests": rounds * chunk,
        "concurrency": conc,
        "round_size": chunk,
        "rounds": rounds,
        "repetitions": cfg.overhead_reps,
        "samples": samples,
    }
