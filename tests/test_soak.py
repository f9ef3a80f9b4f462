"""Soak: 200,000 renewals under faults, the client's RSS sampled (``nox -s soak``).

The fake server runs in its own process so that what is measured is the client alone.
Not part of the default run (marker ``soak``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcsid_async import OutcomeState, PcsidClient, RetryPolicy

TOKEN = "soak-token-0a9b8c7d"
DEVICES = int(os.environ.get("PCSID_SOAK_DEVICES", "200000"))
SAMPLE_EVERY = 10_000


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _requests(n: int) -> Iterator[tuple[str, str]]:
    for i in range(n):
        yield f"soak-{i:09d}", f"{i % 1_000_000:06d}"


@pytest.mark.soak
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc for RSS")
async def test_soak_rss_stays_flat_and_every_device_gets_one_outcome() -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("_soak_server.py")),
        TOKEN,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        seen = bytearray(DEVICES)
        states = dict.fromkeys(OutcomeState, 0)
        samples: list[tuple[int, float]] = []
        async with PcsidClient(
            TOKEN,
            "300000000000003",
            base_url=url,
            timeout=0.25,
            retry=RetryPolicy(initial_delay=0.001, max_delay=0.01),
            max_connections=64,
        ) as client:
            done = 0
            async for outcome in client.renew_many(
                _requests(DEVICES), concurrency=64, await_activities=False
            ):
                seen[int(outcome.device_id[5:])] += 1
                states[outcome.state] += 1
                done += 1
                if done % SAMPLE_EVERY == 0:
                    samples.append((done, _rss_mb()))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        await server.wait()

    assert done == DEVICES
    assert seen.count(1) == DEVICES
    baseline = samples[0][1]
    growth = max(rss for _, rss in samples) - baseline
    counts = ", ".join(f"{state.name}: {n}" for state, n in states.items())
    print(f"\nsoak: {DEVICES} devices, outcomes: {counts}")
    print("soak: RSS (MB) every 10k outcomes: " + ", ".join(f"{rss:.1f}" for _, rss in samples))
    print(f"soak: RSS growth after warm-up (first 10k): {growth:.1f} MB")
    assert growth < 50
