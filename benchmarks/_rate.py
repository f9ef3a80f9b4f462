"""Scenario 7: the rate ``renew_many`` keeps under ``rate_limit``, on the server's clock."""

from __future__ import annotations

import asyncio
from typing import Any

from _scenarios import (
    Config,
    devices,
)
from _servers import ServerProcess

from pcsid_async import PcsidClient

# --- 7. rate limit --------------------------------------------------------------------------


def rate(cfg: Config) -> dict[str, Any]:
    """``renew_many`` with ``rate_limit``: the rate the server saw, from its own clock.

    ``rate_devices`` devices, 20 ms latency, concurrency 200 (far more than the limit
    needs); the ``fixed`` server records each renewal's arrival time. ``achieved_over_limit``
    = (arrivals - 1) / (last - first) / limit; ``max_window_over_limit`` = the most arrivals
    in any 1 s window (starting at an arrival) / limit.
    """
    import bisect

    limit, n, conc = cfg.rate_limit, cfg.rate_devices, cfg.batch_concurrency

    async def run(server: ServerProcess) -> None:
        client = PcsidClient(
            server.token, server.vat, base_url=server.url, max_connections=conc, rate_limit=limit
        )
        async with client:
            async for outcome in client.renew_many(devices(n), concurrency=conc):
                assert outcome.ok

    with ServerProcess("fixed", latency=cfg.batch_latency) as server:
        server.command("arrivals")
        asyncio.run(run(server))
        times = sorted(server.command("arrivals")["arrivals"])
    assert len(times) == n, f"server saw {len(times)} of {n}"
    span = times[-1] - times[0]
    window = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    return {
        "achieved_over_limit": (n - 1) / span / limit,
        "max_window_over_limit": window / limit,
        "achieved_per_s": (n - 1) / span,
        "max_in_1s_window": window,
        "rate_limit": limit,
        "devices": n,
        "latency_s": cfg.batch_latency,
        "span_s": span,
    }
