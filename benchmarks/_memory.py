"""The memory scenario: peak RSS of a streamed batch, per device and per request in flight.

Every batch runs in a fresh child process (this module run as a script) that has imported
aiohttp and pcsid_async before its first reading, so only the batch's own memory counts::

    python _memory.py {stream,inflight} {sdk,rawpool,naive} N URL TOKEN VAT

``stream``: N devices at concurrency 200 against the zero-latency ``fixed`` server, the
devices made by a generator. Peak RSS growth (``VmHWM``, reset to the current RSS just
before the batch where the kernel allows it, minus ``VmRSS`` before it) gives
``rss_growth_mb``; the RSS read inside the generator when it hands out device N/10 and
again after the last gives the growth per device in the steady state (``per_device_bytes``:
what the batch keeps per device it has done, start-up costs excluded).

``inflight``: N devices at concurrency N (connector limit N) against a ``fixed`` server
answering after 1 s, so every request is in flight at once; peak RSS growth / N gives
``per_inflight_kib`` (request, connection, task and the batch's own state).

Sides: the SDK (``renew_many``, outcomes discarded as they arrive), the raw worker pool (the
floor: ``concurrency`` aiohttp tasks pulling from the generator, nothing kept), and, in the
stream mode, the naive list-and-gather batch (which holds every coroutine, task and result).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _batch
import _scenarios
from _servers import ServerProcess

if TYPE_CHECKING:
    from _scenarios import Config

HERE = Path(__file__).resolve().parent
STREAM_CONCURRENCY = 200
INFLIGHT_LATENCY = 1.0


def rss_kb(field: str = "VmRSS") -> int:
    """A field of ``/proc/self/status`` in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def metered(n: int, marks: dict[str, int]) -> Iterator[tuple[str, str]]:
    """The devices, reading the RSS when device n/10 is handed out."""
    mark = n // 10
    for i, device in enumerate(_scenarios.devices(n)):
        if i == mark:
            marks["at_tenth_kb"] = rss_kb()
        yield device


def child(mode: str, kind: str, n: int, url: str, token: str, vat: str) -> dict[str, Any]:
    """One batch in this (fresh) process: RSS before, at n/10, at the end, and the peak."""
    server = ServerProcess.attached(url, token, vat)
    marks: dict[str, int] = {}
    conc = n if mode == "inflight" else STREAM_CONCURRENCY
    run = {
        "sdk": _batch.sdk_batch,
        "rawpool": _batch.rawpool_batch,
        "naive": _batch.naive_batch,
    }[kind]
    gc.collect()
    before = rss_kb()
    peak_reset = reset_peak()
    result = asyncio.run(run(server, n, conc, source=metered(n, marks), limit=conc))
    after, peak = rss_kb(), rss_kb("VmHWM")
    out = {
        **result,
        "rss_before_mb": before / 1024,
        "rss_peak_mb": peak / 1024,
        "rss_growth_mb": (peak - before) / 1024,
        "per_inflight_kib": (peak - before) / n,
        "peak_reset": peak_reset,
    }
    if mode == "stream" and kind != "naive":  # naive makes every coroutine up front
        out["per_device_bytes"] = (after - marks["at_tenth_kb"]) * 1024 / (n - n // 10)
    return out


def spawn(mode: str, kind: str, n: int, server: ServerProcess) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and read its JSON line."""
    argv = [sys.executable, str(HERE / "_memory.py"), mode, kind, str(n)]
    argv += [server.url, server.token, server.vat]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child ({mode} {kind}) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def memory(cfg: Config) -> dict[str, Any]:
    """Streamed batch growth (SDK, raw pool, naive) and memory per request in flight."""
    n, inflight = cfg.memory_devices, cfg.memory_inflight
    median = _scenarios.median
    stream: dict[str, list[dict[str, Any]]] = {"sdk": [], "rawpool": [], "naive": []}
    with ServerProcess("fixed") as server:
        for rep in range(cfg.memory_reps):
            for kind, runs in stream.items():
                if kind == "naive" and rep:  # information only: one run
                    continue
                runs.append(spawn("stream", kind, n, server))
    held: dict[str, list[dict[str, Any]]] = {"sdk": [], "rawpool": []}
    with ServerProcess("fixed", latency=INFLIGHT_LATENCY) as server:
        for _ in range(cfg.memory_reps):
            for kind, runs in held.items():
                runs.append(spawn("inflight", kind, inflight, server))

    def fig(samples: dict[str, list[dict[str, Any]]], kind: str, key: str) -> float:
        return median([s[key] for s in samples[kind]])

    sdk_kib, raw_kib = (
        fig(held, "sdk", "per_inflight_kib"),
        fig(held, "rawpool", "per_inflight_kib"),
    )
    return {
        "rss_growth_mb": fig(stream, "sdk", "rss_growth_mb"),
        "rawpool_rss_growth_mb": fig(stream, "rawpool", "rss_growth_mb"),
        "naive_rss_growth_mb": fig(stream, "naive", "rss_growth_mb"),
        "per_device_bytes": fig(stream, "sdk", "per_device_bytes"),
        "rawpool_per_device_bytes": fig(stream, "rawpool", "per_device_bytes"),
        "per_inflight_kib": sdk_kib,
        "rawpool_per_inflight_kib": raw_kib,
        "per_inflight_over_rawpool": sdk_kib / raw_kib,
        "devices": n,
        "concurrency": STREAM_CONCURRENCY,
        "inflight": inflight,
        "inflight_latency_s": INFLIGHT_LATENCY,
        "repetitions": cfg.memory_reps,
        "samples": {"stream": stream, "inflight": held},
    }


def main() -> None:
    """Entry point of a memory child process."""
    _, mode, kind, n, url, token, vat = sys.argv
    assert mode in ("stream", "inflight"), mode
    print(json.dumps(child(mode, kind, int(n), url, token, vat)))


if __name__ == "__main__":
    main()
