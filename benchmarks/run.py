"""Benchmarks of pcsid-async against the limits and against hand-written baselines.

    python benchmarks/run.py [--quick] [--json PATH] [--chart PATH] [--only NAME ...] [--check]

Prints a table of every figure beside its baseline and target, and writes the JSON
(``benchmarks/results-quick.json`` or ``benchmarks/results-full.json`` unless ``--json``
says otherwise). ``--quick`` finishes in under a minute on 2 cores; the full run in under
ten minutes and also draws the throughput chart (``--chart`` draws it in a quick run too).
``--check`` exits 1 when a target is missed. See ``benchmarks/README.md`` for what each
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

import _scenarios
import aiohttp
from _scenarios import Config

HERE = Path(__file__).resolve().parent

SCENARIOS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "overhead": _scenarios.overhead,
    "batch": _scenarios.batch,
    "polling": _scenarios.polling,
    "memory": _scenarios.memory,
    "scaling": _scenarios.scaling,
    "import": _scenarios.import_time,
}

# (scenario, key, target, what the figure is)
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("overhead", "cpu_ratio", 1.15, "CPU per get_status, SDK / raw aiohttp"),
    ("batch", "wall_over_ideal", 1.25, "renew_many wall / (N x latency / concurrency)"),
    ("batch", "vs_naive", 1.10, "renew_many wall / naive gather wall"),
    ("polling", "over_minimum", 1.10, "polls per activity / minimum under the schedule"),
    ("polling", "wall_over_ideal", 1.30, "await_activity wall / (duration + max_interval)"),
    ("polling", "schedule_bound.over_minimum", 1.10, "the same, 200 activities (not load-limited)"),
    ("polling", "schedule_bound.wall_over_ideal", 1.30, "the same, 200 activities"),
    ("memory", "rss_growth_mb", 50.0, "peak RSS growth of a streamed batch, MB"),
    ("scaling", "growth", 1.20, "CPU per device, largest / smallest batch size"),
    ("import", "ratio", 1.50, "import pcsid_async / import aiohttp"),
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


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """The table: (scenario, figure, SDK, baseline, ratio, target + mark)."""
    out: list[tuple[str, str, str, str, str, str]] = []

    def mark(scenario: str, key: str) -> str:
        for s, k, target, _ in TARGETS:
            if (s, k) == (scenario, key):
                ok = figure(results, scenario, key) <= target
                return f"<= {target:g} {'✓' if ok else '✗'}"
        return ""

    if "overhead" in results:
        r = results["overhead"]
        out.append(
            (
                "1 overhead",
                f"CPU/request, {r['requests']:,} get_status @{r['concurrency']}",
                f"{r['sdk_cpu_per_request_us']:.1f} µs",
                f"{r['raw_cpu_per_request_us']:.1f} µs raw",
                f"{r['cpu_ratio']:.3f}",
                mark("overhead", "cpu_ratio"),
            )
        )
    if "batch" in results:
        r = results["batch"]
        out.append(
            (
                "2 batch",
                f"wall / ideal ({r['ideal_s']:.2f} s), {r['devices']:,} @{r['concurrency']}",
                f"{r['sdk_wall_s']:.2f} s",
                f"{r['naive_wall_s']:.2f} s naive",
                f"{r['wall_over_ideal']:.3f}",
                mark("batch", "wall_over_ideal"),
            )
        )
        out.append(
            (
                "2 batch",
                "wall, SDK / naive",
                f"{r['sdk_cpu_per_device_us']:.0f} µs CPU/dev",
                f"{r['naive_cpu_per_device_us']:.0f} µs CPU/dev",
                f"{r['vs_naive']:.3f}",
                mark("batch", "vs_naive"),
            )
        )
    if "polling" in results:
        r = results["polling"]
        for prefix, p in (("", r), ("schedule_bound.", r["schedule_bound"])):
            limited = " LOAD-LIMITED" if p["load_limited"] else ""
            out.append(
                (
                    "3 polling",
                    f"requests/activity (min {r['minimum_requests']}), {p['activities']:,} act."
                    + limited,
                    f"{p['requests_per_activity']:.2f}",
                    f"{p['baseline_requests_per_activity']:.2f} fixed 0.1 s "
                    f"(min {r['baseline_minimum_requests']})",
                    f"{p['over_minimum']:.3f}",
                    mark("polling", prefix + "over_minimum"),
                )
            )
            out.append(
                (
                    "3 polling",
                    f"wall / ideal ({r['ideal_wall_s']:.2f} s), {p['activities']:,} act.",
                    f"{p['sdk_wall_s']:.2f} s",
                    f"{p['baseline_wall_s']:.2f} s fixed 0.1 s",
                    f"{p['wall_over_ideal']:.3f}",
                    mark("polling", prefix + "wall_over_ideal"),
                )
            )
    if "memory" in results:
        r = results["memory"]
        out.append(
            (
                "4 memory",
                f"peak RSS growth, {r['devices']:,} renewals",
                f"{r['rss_growth_mb']:.1f} MB",
                f"{r['naive_rss_growth_mb']:.1f} MB naive",
                f"{r['rss_growth_mb'] / r['naive_rss_growth_mb']:.3f}",
                mark("memory", "rss_growth_mb"),
            )
        )
    if "scaling" in results:
        r = results["scaling"]
        sizes = "/".join(f"{n // 1000}k" for n in r["devices"])
        out.append(
            (
                "5 scaling",
                f"CPU/device at {sizes} devices; growth",
                " / ".join(f"{v:.0f}" for v in r["cpu_per_device_us"]) + " µs",
                " / ".join(f"{v:.0f}" for v in r["naive_cpu_per_device_us"])
                + f" µs naive (growth {r['naive_growth']:.2f})",
                f"{r['growth']:.3f}",
                mark("scaling", "growth"),
            )
        )
    if "import" in results:
        r = results["import"]
        out.append(
            (
                "6 import",
                "import time, fresh interpreter",
                f"{r['pcsid_async_ms']:.0f} ms",
                f"{r['aiohttp_ms']:.0f} ms aiohttp",
                f"{r['ratio']:.3f}",
                mark("import", "ratio"),
            )
        )
    return out


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (readable in a terminal, pasteable in the README)."""
    header = ("scenario", "figure", "SDK", "baseline", "ratio", "target")
    body = rows(results)
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(row) for row in body)])


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
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
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
        results["throughput"] = _scenarios.throughput(cfg)
        chart(results["throughput"], chart_path)
        results["throughput"]["chart"] = str(chart_path)
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = {
        f"{s}.{k}": {
            "value": figure(results, s, k),
            "target": target,
            "ok": figure(results, s, k) <= target,
            "what": what,
        }
        for s, k, target, what in TARGETS
        if s in results
    }

    out_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    missed = [name for name, t in results["targets"].items() if not t["ok"]]
    m = results["machine"]
    print(
        f"\n{'quick' if cfg.quick else 'full'} run, {m['cores']} cores, Python {m['python']}, "
        f"{results['duration_s']:.0f} s; results in {out_path}"
        + (f"; chart in {chart_path}" if chart_path else "")
    )
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped on the way out
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
