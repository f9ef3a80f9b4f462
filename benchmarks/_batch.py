"""Scenario 2: batch renewal, ``renew_many`` against the raw worker pool and the naive batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from _scenarios import (
    RAW_TIMEOUT,
    Config,
    alternate,
    devices,
    median,
    median_interval,
    raw_headers,
    raw_session,
    sdk_client,
)
from _servers import ServerProcess

# --- 2. batch renewal ------------------------------------------------------------------------


async def sdk_batch(
    server: ServerProcess,
    n: int,
    concurrency: int,
    *,
    start: int = 0,
    source: Iterator[tuple[str, str]] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """``renew_many`` over a generator of ``n`` devices; outcomes counted as they arrive.

    ``source`` replaces the generator, ``limit`` the connector limit (``max(concurrency,
    200)``); the same for the two baselines below.
    """
    cpu, wall = time.process_time(), time.perf_counter()
    ok = 0
    source = devices(n, start) if source is None else source
    async with sdk_client(server, limit or max(concurrency, 200)) as client:
        async for outcome in client.renew_many(source, concurrency=concurrency):
            ok += outcome.ok
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert ok == n, f"SDK renewed {ok} of {n}"
    return {"wall_s": wall, "cpu_us_per_device": cpu / n * 1e6, "devices": n}


def naive_renew(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], gate: asyncio.Semaphore
) -> Callable[[str, str], Awaitable[Any]]:
    """The renew coroutine users write by hand: semaphore, POST with ``json=``, ``json()``."""

    async def renew(device_id: str, otp: str) -> Any:
        async with gate:
            body = {"DeviceId": device_id, "Otp": otp}
            async with session.post(url, json=body, headers=headers) as resp:
                return await resp.json()

    return renew


async def naive_batch(
    server: ServerProcess,
    n: int,
    concurrency: int,
    *,
    start: int = 0,
    source: Iterator[tuple[str, str]] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The hand-written batch: a semaphore and ``asyncio.gather`` over a list of coroutines."""
    cpu, wall = time.process_time(), time.perf_counter()
    url = f"{server.url}/onboarding/renew-pcsid"
    headers = raw_headers(server)
    source = devices(n, start) if source is None else source
    async with raw_session(limit or max(concurrency, 200)) as session:
        renew = naive_renew(session, url, headers, asyncio.Semaphore(concurrency))
        results = await asyncio.gather(*[renew(d, o) for d, o in source])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ok = sum(r.get("Status") == "GENERATED" for r in results)
    assert ok == n, f"naive renewed {ok} of {n}"
    return {"wall_s": wall, "cpu_us_per_device": cpu / n * 1e6, "devices": n}


async def rawpool_batch(
    server: ServerProcess,
    n: int,
    concurrency: int,
    *,
    start: int = 0,
    source: Iterator[tuple[str, str]] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The fair floor: ``concurrency`` raw worker tasks pulling devices from one generator.

    POST with ``json=`` + ``await resp.json()``; the connector limit and aiohttp timer cost
    of the SDK's batch (``max(concurrency, 200)``, ``RAW_TIMEOUT``).
    """
    cpu, wall = time.process_time(), time.perf_counter()
    url = f"{server.url}/onboarding/renew-pcsid"
    headers = raw_headers(server)
    source = devices(n, start) if source is None else source
    ok = 0
    connector = aiohttp.TCPConnector(limit=limit or max(concurrency, 200))
    async with aiohttp.ClientSession(connector=connector, timeout=RAW_TIMEOUT) as session:

        async def worker() -> None:
            nonlocal ok
            for device_id, otp in source:
                body = {"DeviceId": device_id, "Otp": otp}
                async with session.post(url, json=body, headers=headers) as resp:
                    ok += (await resp.json()).get("Status") == "GENERATED"

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert ok == n, f"raw pool renewed {ok} of {n}"
    return {"wall_s": wall, "cpu_us_per_device": cpu / n * 1e6, "devices": n}


def paired(samples: dict[str, list[dict[str, Any]]], a: str, b: str) -> list[float]:
    """Each run of ``a`` over the run of ``b`` right after it."""
    return [x["wall_s"] / y["wall_s"] for x, y in zip(samples[a], samples[b], strict=True)]


def batch(cfg: Config) -> dict[str, Any]:
    """``renew_many`` wall time against the ideal and against the naive hand-written batch.

    The server answers every renewal after ``batch_latency`` (20 ms), so with
    ``concurrency`` requests in flight the ideal wall time is N x latency / concurrency.
    Baselines: the raw worker pool (the floor) and the naive batch (see their functions);
    same connector limit (200). All times include creating the session and its connections.
    """
    n, conc, latency = cfg.batch_devices, cfg.batch_concurrency, cfg.batch_latency
    ideal = n * latency / conc
    with ServerProcess("fixed", latency=latency) as server:
        # Warm-up: first use of each code path (cattrs builds its structuring code lazily).
        asyncio.run(sdk_batch(server, conc, conc))
        asyncio.run(naive_batch(server, conc, conc))
        asyncio.run(rawpool_batch(server, conc, conc))
        samples = alternate(
            cfg.reps,
            {
                "sdk": lambda: asyncio.run(sdk_batch(server, n, conc)),
                "rawpool": lambda: asyncio.run(rawpool_batch(server, n, conc)),
                "naive": lambda: asyncio.run(naive_batch(server, n, conc)),
            },
        )
    # Latency-bound: 200 ms answers, the client's CPU no longer the limit.
    slow_n = cfg.latency_bound_devices
    with ServerProcess("fixed", latency=0.2) as server:
        asyncio.run(sdk_batch(server, conc, conc))
        slow = alternate(
            cfg.latency_reps,
            {
                "sdk": lambda: asyncio.run(sdk_batch(server, slow_n, conc)),
                "rawpool": lambda: asyncio.run(rawpool_batch(server, slow_n, conc)),
            },
        )
    sdk_wall = median([s["wall_s"] for s in samples["sdk"]])
    naive_wall = median([s["wall_s"] for s in samples["naive"]])
    # Each SDK run is paired with the naive run right after it (the machine's speed drifts
    # between runs more than the two sides differ); vs_naive is the median pair's ratio.
    pair_ratios = [
        s["wall_s"] / b["wall_s"] for s, b in zip(samples["sdk"], samples["naive"], strict=True)
    ]
    sdk_cpu_us = median([s["cpu_us_per_device"] for s in samples["sdk"]])
    cpu_floor = n * sdk_cpu_us / 1e6
    floor_pairs, slow_pairs = paired(samples, "sdk", "rawpool"), paired(slow, "sdk", "rawpool")
    return {
        "vs_rawpool": median(floor_pairs),
        "vs_rawpool_interval": median_interval(floor_pairs),
        "vs_rawpool_pairs": floor_pairs,
        "rawpool_wall_s": median([s["wall_s"] for s in samples["rawpool"]]),
        "rawpool_cpu_per_device_us": median([s["cpu_us_per_device"] for s in samples["rawpool"]]),
        "latency_bound": {
            "vs_rawpool": median(slow_pairs),
            "vs_rawpool_interval": median_interval(slow_pairs),
            "vs_rawpool_pairs": slow_pairs,
            "repetitions": cfg.latency_reps,
            "sdk_wall_s": median([s["wall_s"] for s in slow["sdk"]]),
            "rawpool_wall_s": median([s["wall_s"] for s in slow["rawpool"]]),
            "ideal_s": slow_n * 0.2 / conc,
            "devices": slow_n,
            "latency_s": 0.2,
            "samples": slow,
        },
        "wall_over_ideal": sdk_wall / ideal,
        "vs_naive": median(pair_ratios),
        "vs_naive_pairs": pair_ratios,
        "vs_naive_ratio_of_medians": sdk_wall / naive_wall,
        "sdk_wall_s": sdk_wall,
        "naive_wall_s": naive_wall,
        "naive_wall_over_ideal": naive_wall / ideal,
        # The ideal assumes a client that costs no CPU. This one is the client's own floor:
        # its CPU time for the batch (one core). wall / floor near 1 means the batch never
        # waited on anything but its own CPU.
        "sdk_cpu_floor_s": cpu_floor,
        "sdk_wall_over_cpu_floor": sdk_wall / cpu_floor,
        "ideal_s": ideal,
        "sdk_cpu_per_device_us": sdk_cpu_us,
        "naive_cpu_per_device_us": median([s["cpu_us_per_device"] for s in samples["naive"]]),
        "devices": n,
        "latency_s": latency,
        "concurrency": conc,
        "max_connections": 200,
        "repetitions": cfg.reps,
        "samples": samples,
    }
