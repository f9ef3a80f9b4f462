"""Scenarios 5 and 6 (scaling with batch size, import time) and the throughput chart."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from typing import Any

from _batch import naive_batch, naive_renew, sdk_batch
from _scenarios import (
    Config,
    alternate,
    devices,
    median,
    raw_headers,
    raw_session,
    sdk_client,
)
from _servers import ServerProcess

# --- 5. scaling ------------------------------------------------------------------------------


def scaling(cfg: Config) -> dict[str, Any]:
    """Client CPU per device of ``renew_many`` at growing batch sizes (flat is the goal).

    Zero-latency server, concurrency 200; devices streamed from a generator, outcomes
    discarded. The CPU clock covers the batch itself, after the client has opened its
    connections with a 200-device warm-up, so each figure is the marginal cost per device
    (the median of its runs). ``growth`` is the largest per-device figure over the smallest,
    whichever sizes they belong to. Baseline: the naive list-and-gather batch at the same
    sizes, measured the same way.
    """
    conc = 200

    async def sdk(server: ServerProcess, n: int) -> float:
        async with sdk_client(server, conc) as client:
            async for _ in client.renew_many(devices(conc, 10**9), concurrency=conc):
                pass
            cpu = time.process_time()
            async for _ in client.renew_many(devices(n), concurrency=conc):
                pass
            return (time.process_time() - cpu) / n * 1e6

    async def naive(server: ServerProcess, n: int) -> float:
        url = f"{server.url}/onboarding/renew-pcsid"
        headers = raw_headers(server)
        async with raw_session(conc) as session:
            renew = naive_renew(session, url, headers, asyncio.Semaphore(conc))
            await asyncio.gather(*[renew(d, o) for d, o in devices(conc, 10**9)])
            cpu = time.process_time()
            await asyncio.gather(*[renew(d, o) for d, o in devices(n)])
            return (time.process_time() - cpu) / n * 1e6

    sizes = list(cfg.scaling_devices)
    samples: dict[int, dict[str, list[float]]] = {n: {"sdk": [], "naive": []} for n in sizes}
    # Sizes interleave within each round, so a slow drift of the shared machine bills every
    # size alike instead of whichever ran last. Small batches are cheap and noisier: they get
    # three runs a round; 100,000 devices (a 40-second run that averages itself) get one run,
    # in the first round.
    with ServerProcess("fixed") as server:
        for round_ in range(cfg.scaling_rounds):
            for n in sizes:
                runs = 3 if n <= 1_000 else 1
                if n > 10_000 and round_ >= 1:
                    continue
                for _ in range(runs):
                    for name, run in (("sdk", sdk), ("naive", naive)):
                        gc.collect()
                        samples[n][name].append(asyncio.run(run(server, n)))
    sdk_cpu = [median(samples[n]["sdk"]) for n in sizes]
    naive_cpu = [median(samples[n]["naive"]) for n in sizes]
    return {
        "devices": sizes,
        "cpu_per_device_us": sdk_cpu,
        "growth": max(sdk_cpu) / min(sdk_cpu),
        "largest_n_over_smallest_n": sdk_cpu[-1] / sdk_cpu[0],
        "naive_cpu_per_device_us": naive_cpu,
        "naive_growth": max(naive_cpu) / min(naive_cpu),
        "concurrency": conc,
        "samples": {str(n): samples[n] for n in sizes},
    }


# --- 6. import -------------------------------------------------------------------------------

_IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)


def import_time(cfg: Config) -> dict[str, Any]:
    """``import pcsid_async`` against ``import aiohttp``, each in a fresh interpreter.

    pcsid_async imports aiohttp, attrs, cattrs and backoff, so the ratio is what the SDK
    adds on top of the HTTP library it is built on. Bytecode caching is on for these
    children (as in any installed package) and one untimed import of each fills the cache
    first, so no run pays for compiling source.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def probe(module: str) -> float:
        code = _IMPORT_PROBE.format(module=module)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        return float(out.stdout.strip()) * 1000

    probe("pcsid_async")
    probe("aiohttp")
    samples = alternate(
        cfg.import_reps,
        {"pcsid_async": lambda: probe("pcsid_async"), "aiohttp": lambda: probe("aiohttp")},
    )
    sdk_ms = median(samples["pcsid_async"])
    aiohttp_ms = median(samples["aiohttp"])
    return {
        "ratio": sdk_ms / aiohttp_ms,
        "pcsid_async_ms": sdk_ms,
        "aiohttp_ms": aiohttp_ms,
        "repetitions": cfg.import_reps,
        "samples": samples,
    }


# --- chart -----------------------------------------------------------------------------------


def throughput(cfg: Config) -> dict[str, Any]:
    """Devices per second against concurrency, SDK and naive, 20 ms server latency.

    Each point renews ``50 x concurrency`` devices (about one ideal second) with the
    connector limit equal to the concurrency (at least 200, as in the batch scenario).
    The ideal is concurrency / latency.
    """
    latency = cfg.batch_latency
    points: dict[str, list[float]] = {"sdk": [], "naive": []}
    with ServerProcess("fixed", latency=latency) as server:
        asyncio.run(sdk_batch(server, 200, 200))
        asyncio.run(naive_batch(server, 200, 200))
        for conc in cfg.chart_concurrency:
            n = 50 * conc
            samples = alternate(
                2,
                {
                    "sdk": lambda: asyncio.run(sdk_batch(server, n, conc)),  # noqa: B023
                    "naive": lambda: asyncio.run(naive_batch(server, n, conc)),  # noqa: B023
                },
            )
            for name, values in points.items():
                values.append(n / median([s["wall_s"] for s in samples[name]]))
    return {
        "concurrency": list(cfg.chart_concurrency),
        "sdk_devices_per_s": points["sdk"],
        "naive_devices_per_s": points["naive"],
        "ideal_devices_per_s": [c / latency for c in cfg.chart_concurrency],
        "latency_s": latency,
    }
