"""Benchmarks of pcsid-async against the limits and against hand-written baselines.

    python benchmarks/run.py [--quick] [--json PATH] [--chart PATH] [--only NAME ...] [--check]

Prints a table of every figure beside its baseline and target, and writes the JSON
(``benchmarks/results-quick.json`` or ``benchmarks/results-full.json`` unless ``--json``
says otherwise). ``--quick`` finishes in under a minute on 2 cores; the full run in under
ten minutes and also draws the throughput chart (``--chart`` draws it in a quick run too).
Exit status: 0 when every target holds, 1 when one is missed, 2 on a harness error (a ratio
below its 0.98 lower bound). See ``benchmarks/README.md`` for what each
scenario measures and what its baseline is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _batch
import _memory
import _overhead
import _polls
import _rate
import _scenarios
import _sizes
import aiohttp
from _scenarios import Config

HERE = Path(__file__).resolve().parent

SCENARIOS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "overhead": _overhead.overhead,
    "batch": _batch.batch,
    "rate": _rate.rate,
    "polling": _polls.polling,
    "memory": _memory.memory,
    "scaling": _sizes.scaling,
    "import": _sizes.import_time,
    "journal": _scenarios.journal,
}

LOWER = 0.98  # a ratio against a baseline or a bound below this is a harness error
# ...except where the lower bound is the target itself: a pacer that loses rate is a library
# defect (exit 1), not a broken harness.
LOWER_IS_TARGET = frozenset({"rate.achieved_over_limit"})

# (scenario, key, lower bound or None, upper bound, what the bound means)
TARGETS: tuple[tuple[str, str, float | None, float, str], ...] = (
    (
        "overhead",
        "cpu_ratio",
        LOWER,
        1.20,
        "CPU/get_status, SDK / raw aiohttp (same timer, parser)",
    ),
    ("overhead", "renew_cpu_ratio", LOWER, 1.10, "CPU/renew (POST), SDK / raw aiohttp"),
    ("overhead", "uvloop_cpu_ratio", LOWER, 1.20, "CPU/get_status on uvloop, SDK / raw aiohttp"),
    ("batch", "vs_rawpool", LOWER, 1.20, "renew_many wall / raw worker pool, 20 ms (CPU-bound)"),
    ("batch", "latency_bound.vs_rawpool", LOWER, 1.05, "the same at 200 ms (latency-bound)"),
    ("rate", "achieved_over_limit", LOWER, 1.00, "rate the server saw / rate_limit"),
    ("rate", "max_window_over_limit", None, 1.00, "most arrivals in any 1 s / rate_limit"),
    ("polling", "over_expected", LOWER, 1.05, "polls/activity / simulated schedule, 200 act."),
    ("polling", "detect_lag_over_interval", None, 1.10, "p95 completion->seen / delay in force"),
    ("memory", "rss_growth_mb", None, 50.0, "peak RSS growth of a streamed batch, MB"),
    ("scaling", "growth", None, 1.20, "CPU per device, largest / smallest batch size"),
    ("import", "ratio", None, 1.50, "import pcsid_async / import aiohttp"),
    ("journal", "cpu_overhead", LOWER, 1.10, "batch CPU/device with journal / without"),
)

# Reported without a target: (scenario, key, what it is)
INFO: tuple[tuple[str, str, str], ...] = (
    ("overhead", "vs_httpx", "CPU/get_status, SDK / hand-written httpx.AsyncClient loop"),
    ("overhead", "sdk_cpu_per_request_us", "SDK CPU per get_status, µs"),
    ("overhead", "raw_cpu_per_request_us", "raw aiohttp CPU per get_status, µs"),
    ("batch", "vs_naive", "renew_many wall / naive semaphore + gather"),
    ("batch", "wall_over_ideal", "renew_many wall / (N x latency / concurrency)"),
    ("batch", "sdk_wall_over_cpu_floor", "renew_many wall / its own CPU time"),
    ("polling", "over_minimum", "polls/activity / un-jittered zero-RTT minimum, 200 act."),
    ("polling", "wall_over_ideal", "last seen / (duration + max_interval), 200 act."),
    ("polling", "rtt_ms", "mean round trip of a poll, ms, 200 act."),
    ("polling", "saturated.over_expected", "polls/activity / simulated schedule, 2,000 act."),
    ("polling", "saturated.detect_lag_over_interval", "p95 lag / delay in force, 2,000 act."),
    ("polling", "saturated.cpu_saturation", "client CPU time / wall, 2,000 act."),
    ("polling", "saturated.rtt_ms", "mean round trip of a poll, ms, 2,000 act."),
    ("memory", "devices", "devices in the streamed batch (rss_growth_mb)"),
    ("memory", "rawpool_rss_growth_mb", "raw worker pool peak RSS growth, MB"),
    ("memory", "naive_rss_growth_mb", "naive batch peak RSS growth, MB"),
    ("memory", "per_device_bytes", "SDK RSS growth per device streamed, bytes"),
    ("memory", "rawpool_per_device_bytes", "raw pool RSS growth per device (floor), bytes"),
    ("memory", "per_inflight_kib", "SDK RSS per request in flight (1,000 at once), KiB"),
    ("memory", "rawpool_per_inflight_kib", "raw pool RSS per request in flight, KiB"),
    ("journal", "wall_overhead_latency", "batch wall with journal / without, 20 ms, conc. 20"),
)


def figure(results: dict[str, Any], scenario: str, key: str) -> Any:
    """``results[scenario][k1][k2]...`` for ``key`` = "k1.k2..."."""
    value = results[scenario]
    for part in key.split("."):
        value = value[part]
    return value


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on Linux
        load = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        "load_average_at_start": load,
    }


def lookup(results: dict[str, Any], scenario: str, key: str) -> Any:
    """The figure, or None when its scenario did not run or was skipped."""
    try:
        return figure(results, scenario, key)
    except (KeyError, TypeError):
        return None


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target that ran: value, bounds, meaning, ok, harness_error (below the lower bound)."""
    out: dict[str, dict[str, Any]] = {}
    for scenario, key, low, high, what in TARGETS:
        if scenario not in results:
            continue
        value = lookup(results, scenario, key)
        if value is None:
            out[f"{scenario}.{key}"] = {"skipped": results[scenario].get("skipped"), "what": what}
            continue
        below = low is not None and value < low
        ok = not below and value <= high
        interval = lookup(results, scenario, key + "_interval")
        out[f"{scenario}.{key}"] = {
            "value": value,
            "lower": low,
            "target": high,
            "ok": ok,
            "harness_error": below and f"{scenario}.{key}" not in LOWER_IS_TARGET,
            "what": what,
            # The median's 95 % interval over the paired samples (where there are pairs) and
            # whether all of it lies on the verdict's side of the bound: a verdict whose
            # interval straddles its bound is within this machine's noise.
            "interval": interval,
            "clear": None if interval is None else clear(interval, low, high, ok),
        }
    return out


def clear(interval: list[float], low: float | None, high: float, ok: bool) -> bool:
    """Whether the whole ``interval`` agrees with the verdict ``ok`` against [low, high]."""
    lo, hi = interval
    if ok:
        return hi <= high and (low is None or lo >= low)
    return lo > high or (low is not None and hi < low)


def table(results: dict[str, Any]) -> str:
    """Every verdict with its bound and what the bound means, then the information figures."""
    lines = []
    for name, v in results["targets"].items():
        if "value" not in v:
            lines.append(f"  SKIP    {name:38} {v['skipped']}  ({v['what']})")
            continue
        bound = (f"[{v['lower']:g}, {v['target']:g}]") if v["lower"] else f"<= {v['target']:g}"
        mark = "HARNESS ERROR" if v["harness_error"] else ("ok" if v["ok"] else "MISSED")
        if v.get("clear") is False:
            mark += "~"
        spread = "" if not v.get("interval") else "{:.3f}-{:.3f}".format(*v["interval"])
        lines.append(f"  {mark:7} {name:38} {v['value']:9.3f}  {spread:11}  {bound:14} {v['what']}")
    lines.append(
        "  (median; beside it its 95 % interval over the paired samples, where there are pairs;"
        "\n   ~ = the interval straddles the bound: the verdict is within this machine's noise)"
    )
    lines.append("information (no target):")
    for scenario, key, what in INFO:
        value = lookup(results, scenario, key)
        if value is not None:
            lines.append(f"          {scenario + '.' + key:38} {value:9.3f}  {what}")
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> None:
    """Devices/s against concurrency, SDK and naive, with the ideal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conc = data["concurrency"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(conc, data["ideal_devices_per_s"], "k:", label="ideal (concurrency / latency)")
    ax.plot(conc, data["sdk_devices_per_s"], "o-", label="pcsid-async renew_many")
    ax.plot(conc, data["naive_devices_per_s"], "s--", label="naive semaphore + gather")
    ax.set_xscale("log", base=2)
    ax.set_xticks(conc, [str(c) for c in conc])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("devices renewed per second")
    latency_ms = data["latency_s"] * 1000
    ax.set_title(f"Batch renewal throughput, {latency_ms:g} ms server latency, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; write the JSON (and the chart)."""
    parser = argparse.ArgumentParser(description="pcsid-async benchmarks")
    parser.add_argument("--quick", action="store_true", help="the < 60 s run")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument(
        "--chart",
        nargs="?",
        type=Path,
        const=HERE / "throughput.png",
        help="draw the throughput chart (default in the full run: benchmarks/throughput.png)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the chart in a full run")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="these scenarios")
    parser.add_argument("--check", action="store_true", help="kept for old scripts: always on")
    args = parser.parse_args(argv)

    cfg = Config.make(quick=args.quick)
    out_path = args.json or HERE / ("results-quick.json" if args.quick else "results-full.json")
    chart_path = args.chart
    if chart_path is None and not args.quick and not args.no_chart and not args.only:
        chart_path = HERE / "throughput.png"

    started = time.perf_counter()
    results: dict[str, Any] = {
        "quick": cfg.quick,
        "machine": machine(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for name, scenario in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = scenario(cfg)
        results[name]["duration_s"] = time.perf_counter() - t
    if chart_path is not None:
        print("running throughput chart ...", file=sys.stderr, flush=True)
        results["throughput"] = _sizes.throughput(cfg)
        chart(results["throughput"], chart_path)
        results["throughput"]["chart"] = str(chart_path)
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = verdicts(results)

    out_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    targets = results["targets"].values()
    errors = [n for n, t in results["targets"].items() if t.get("harness_error")]
    missed = [n for n, t in results["targets"].items() if "ok" in t and not t["ok"]]
    m = results["machine"]
    print(
        f"\n{'quick' if cfg.quick else 'full'} run, {m['cores']} cores, Python {m['python']}, "
        f"{results['duration_s']:.0f} s; results in {out_path}"
        + (f"; chart in {chart_path}" if chart_path else "")
    )
    if errors:
        print(f"HARNESS ERROR (below the {LOWER} lower bound): {', '.join(errors)}")
        return 2
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if missed or not targets else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped on the way out
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
