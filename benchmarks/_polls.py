"""The polling scenario: polls per activity against the documented schedule, and detection lag.

The ``activities`` server (``_servers.py``) creates activities that answer IN_PROGRESS until
``polling_duration`` seconds after their creation and SUCCEEDED after, and records the
arrival time of every poll on its own ``time.monotonic()`` (system-wide on Linux, so the
client's ``time.monotonic()`` is on the same clock). The client awaits all of them at once
with ``await_activity(interval=0.1, max_interval=0.5)``; an ``on_response`` hook records
each request's round trip (sending to answer, as the SDK times it).

Figures, per run (the median of the runs is reported):

``over_expected``
    Polls per activity / the expected count of the documented schedule: the first poll at
    once, then after each answer a sleep of ``interval * 1.5**k`` capped at ``max_interval``,
    jittered to uniform(d/2, d). The expectation is simulated (``expected_polls``): for each
    activity, starting from its first poll's arrival, each next arrival comes one measured
    round trip (the run's mean) plus one jittered sleep later, until one lands at or after
    the activity's completion. The law is written out here from the documentation, not
    imported from the SDK, so a schedule that drifts from what is documented shows.
``detect_lag_over_interval``
    For each activity: (the moment ``await_activity`` returned on the client - the
    completion time) / the un-jittered delay in force when it completed (the sleep that
    spanned it: ``schedule(k)`` after the k-th poll). The schedule allows up to one delay
    plus a round trip; the figure is the 95th percentile over the activities (``_max``
    beside it).

At 200 activities the schedule alone decides (the targets). At 2,000 the two shared cores
saturate (``cpu_saturation`` = client CPU time / wall says how much of a core the client
took): polls wait in the client's gate and loop, which the round trip the SDK times does not
include, so fewer polls are made than the schedule calls for and detection comes later;
reported without a target.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from _servers import ServerProcess

from pcsid_async import PcsidClient

if TYPE_CHECKING:
    from _scenarios import Config

GROWTH = 1.5
LIMIT = 100  # PcsidClient's default max_connections; the fixed-interval baseline gets the same


def delay(interval: float, max_interval: float, k: int) -> float:
    """The documented un-jittered delay after poll number ``k`` (0 for the first poll)."""
    return min(max_interval, interval * GROWTH**k)


def expected_polls(
    first: float,
    done: float,
    rtt: float,
    interval: float,
    max_interval: float,
    *,
    draws: int,
    rng: random.Random,
) -> float:
    """The mean number of polls the documented schedule makes to see ``done``, from ``first``."""
    total = 0
    for _ in range(draws):
        t, k, polls = first, 0, 1
        while t < done:
            d = delay(interval, max_interval, k)
            t += rtt + rng.uniform(d / 2, d)
            k += 1
            polls += 1
        total += polls
    return total / draws


def minimum_polls(duration: float, interval: float, max_interval: float) -> int:
    """The fewest polls that see an activity finishing ``duration`` s after the first poll.

    Jitter only shortens a delay, so the un-jittered schedule with a zero round trip
    reaches ``duration`` with the fewest polls. For 1.0 s, 0.1 s, 0.5 s: polls at 0, 0.1,
    0.25, 0.475, 0.8125 and 1.3125 s, so 6.
    """
    t, polls, k = 0.0, 1, 0
    while t < duration:
        t += delay(interval, max_interval, k)
        k += 1
        polls += 1
    return polls


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def figures_of_run(
    cfg: Config, arrivals: list[list[float]], done: list[float], detected: list[float], rtt: float
) -> dict[str, Any]:
    """One run's figures from the server's arrival times and the client's detection times."""
    interval, max_interval = cfg.polling_interval, cfg.polling_max_interval
    rng = random.Random(12)
    draws = max(10, 20_000 // len(done))
    expected = sum(
        expected_polls(a[0], d, rtt, interval, max_interval, draws=draws, rng=rng)
        for a, d in zip(arrivals, done, strict=True)
    )
    lags = []
    for a, d, seen in zip(arrivals, done, detected, strict=True):
        before = sum(t < d for t in a)  # polls that saw it IN_PROGRESS
        in_force = delay(interval, max_interval, before - 1)
        lags.append((seen - d) / in_force)
    polls = sum(len(a) for a in arrivals)
    return {
        "over_expected": polls / expected,
        "requests_per_activity": polls / len(done),
        "expected_per_activity": expected / len(done),
        "detect_lag_over_interval": percentile(lags, 0.95),
        "detect_lag_over_interval_max": max(lags),
        "detect_lag_over_interval_median": statistics.median(lags),
        "rtt_ms": rtt * 1000,
    }


async def fixed_interval(
    server: ServerProcess,
    interval: float,
    ids: list[str],
    detected: list[float],
    rtts: list[float],
) -> None:
    """The loop users write by hand: raw aiohttp ``get`` + ``json()`` every ``interval``."""
    headers = {"x-cleartax-auth-token": server.token, "vat": server.vat}
    connector = aiohttp.TCPConnector(limit=LIMIT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def wait(k: int, activity_id: str) -> None:
            url = f"{server.url}/onboarding/{activity_id}/pcsid-status"
            while True:
                sent = time.perf_counter()
                async with session.get(url, headers=headers) as resp:
                    body = await resp.json()
                rtts.append(time.perf_counter() - sent)
                if body["Status"] != "IN_PROGRESS":
                    detected[k] = time.monotonic()
                    return
                await asyncio.sleep(interval)

        await asyncio.gather(*(wait(k, i) for k, i in enumerate(ids)))


def summary(samples: list[dict[str, Any]], minimum: int, ideal: float) -> dict[str, Any]:
    """The median of each figure over the runs, and the first round's two ratios."""
    keys = [k for k, v in samples[0].items() if isinstance(v, float)]
    out: dict[str, Any] = {k: statistics.median(s[k] for s in samples) for k in keys}
    out["over_minimum"] = out["requests_per_activity"] / minimum
    out["wall_over_ideal"] = out["wall_s"] / ideal
    out["repetitions"] = len(samples)
    out["samples"] = samples
    return out


def polling(cfg: Config) -> dict[str, Any]:
    """``await_activity`` over 200 activities (targets) and 2,000 (saturated, reported)."""
    duration = cfg.polling_duration
    interval, max_interval = cfg.polling_interval, cfg.polling_max_interval

    with ServerProcess("activities") as server:

        async def sdk(ids: list[str], detected: list[float], rtts: list[float]) -> None:
            client = PcsidClient(
                server.token,
                server.vat,
                base_url=server.url,
                max_connections=LIMIT,
                on_response=lambda event: rtts.append(event.elapsed),
            )

            async def one(k: int, activity_id: str) -> None:
                final = await client.await_activity(
                    activity_id, timeout=60.0, interval=interval, max_interval=max_interval
                )
                detected[k] = time.monotonic()
                assert final.succeeded

            async with client:
                await asyncio.gather(*(one(k, i) for k, i in enumerate(ids)))

        fixed = functools.partial(fixed_interval, server, interval)

        Pollers = Callable[[list[str], list[float], list[float]], Awaitable[None]]

        def run(pollers: Pollers, n: int) -> dict[str, Any]:
            created = server.command("activities", n=n, delay=duration)
            ids = created["ids"]
            detected = [0.0] * n
            rtts: list[float] = []
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(pollers(ids, detected, rtts))  # type: ignore[arg-type]
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            answer = server.command("polls", ids=ids)
            rtt = statistics.fmean(rtts)
            out = figures_of_run(cfg, answer["arrivals"], answer["done"], detected, rtt)
            out["wall_s"] = max(detected) - created["created"]
            out["cpu_saturation"] = cpu / wall
            return out

        light = [run(sdk, cfg.polling_activities // 10) for _ in range(cfg.polling_reps)]
        baseline = [run(fixed, cfg.polling_activities // 10)]
        heavy = [run(sdk, cfg.polling_activities) for _ in range(cfg.polling_heavy_reps)]

    minimum = minimum_polls(duration, interval, max_interval)
    ideal = duration + max_interval
    fixed_summary = summary(baseline, minimum, ideal)
    return {
        **summary(light, minimum, ideal),
        "activities": cfg.polling_activities // 10,
        "saturated": {**summary(heavy, minimum, ideal), "activities": cfg.polling_activities},
        "baseline_fixed_interval": {
            "requests_per_activity": fixed_summary["requests_per_activity"],
            "wall_over_ideal": fixed_summary["wall_over_ideal"],
            "rtt_ms": fixed_summary["rtt_ms"],
        },
        "minimum_requests": minimum,
        "ideal_wall_s": ideal,
        "activity_duration_s": duration,
        "interval_s": interval,
        "max_interval_s": max_interval,
        "max_connections": LIMIT,
    }
