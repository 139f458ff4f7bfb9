"""Run the benchmarks, print their tables, write JSON (+ the tables as Markdown) and PNG plots.

    python -m benchmarks.run                       # full run (make bench)
    python -m benchmarks.run --quick               # smoke run of every code path (make bench-quick)
    python -m benchmarks.run --only decode,limiter --out benchmarks/results/latest.json

Each benchmark module has ``run(quick) -> dict`` and ``report(result) -> str``. Missed targets are
reported (with a profile where one helps), never turned into a failing exit status: these are
measurements, not tests.

Each benchmark runs in a fresh interpreter: what one imports must not weigh on the next. ccxt (the
pipeline's baseline) alone brings 163,000 objects that every full garbage-collector pass then
walks; run after it in one process, the fan-out's full passes took up to 196 ms and the collector
24% of its loop at 1k portfolios, against 26 ms and 9% in a process of its own (measured).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, print_table, speed_probe, write_json

#: name -> module. Each module exposes ``run(quick: bool) -> dict`` and ``report(result) -> str``.
BENCHMARKS: dict[str, str] = {
    "decode": "benchmarks.bench_decode",
    "pipeline": "benchmarks.bench_pipeline",
    "limiter": "benchmarks.bench_limiter",
    "fanout": "benchmarks.bench_fanout",
    "redis": "benchmarks.bench_redis",
}

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.run``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke run (< 30 s)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default benchmarks/results/latest.json, or quick.json with --quick); "
        "plots and a Markdown copy of the tables go beside it",
    )
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    return parser


def _machine_text(machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return (
        f"machine: {machine['cpu']}, {machine['usable_cores']} usable of {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, {machine['os']}, {machine['implementation']} {machine['python']}; "
        f"load average {_load(machine)} at start\n"
        f"packages: {packages}\n"
    )


def _load(machine: dict[str, Any]) -> str:
    load = machine.get("load_average_1_5_15")
    return "/".join(f"{x:.2f}" for x in load) if load else "n/a"


def _status(target: dict[str, Any], quick: bool) -> str:
    if "met" not in target:
        return target.get("status", "skipped")
    if quick:
        return "not judged (quick run)"
    return "met" if target["met"] else "MISSED"


def _run_isolated(module_name: str, quick: bool) -> dict[str, Any]:
    """``module.run(quick)`` in a fresh interpreter (spawned, so it may start its own server process)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_run_child, args=(module_name, quick, sender), name=module_name)
    child.start()
    sender.close()
    try:
        result: dict[str, Any] = receiver.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"{module_name} crashed (exit code {child.exitcode}); its traceback is above") from None
    child.join()
    return result


def _run_child(module_name: str, quick: bool, sender: Any) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with the parent's
    sender.send(importlib.import_module(module_name).run(quick=quick))
    sender.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; return 0 unless one of them crashed."""
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    out: Path = args.out or RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    machine = machine_info()
    header = _machine_text(machine)
    print(header)
    markdown = [f"# connex-async benchmarks{' (quick)' if args.quick else ''}\n", header.replace("\n", "  \n")]
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        before = speed_probe()
        t0 = time.perf_counter()
        result = _run_isolated(BENCHMARKS[name], args.quick)
        result["elapsed_s"] = time.perf_counter() - t0
        result["speed_probe"] = {"before": before, "after": speed_probe()}
        results[name] = result
        probe = (
            f"speed probe (fixed pure-Python loop, median ms; lower is a faster machine): "
            f"{before['median_ms']:.1f} before, {result['speed_probe']['after']['median_ms']:.1f} after"
        )
        markdown.append(module.report(result) + probe + "\n")
        print(f"({name}: {result['elapsed_s']:.1f} s; {probe})\n", flush=True)

    targets = [t for r in results.values() for t in r.get("targets", [])]
    rows = [[t["bench"], t.get("text") or f"vs {t.get('vs')}", _status(t, args.quick)] for t in targets]
    markdown.append(print_table("targets", ["bench", "measured", "status"], rows))

    plots: dict[str, str] = {}
    if not args.no_plots:
        from benchmarks.plots import make_plots

        plots = make_plots(results, out.parent, prefix="quick_" if args.quick else "")
        for name, where in plots.items():
            print(f"plot {name}: {where}")
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if load_end:
        print(
            f"load average {'/'.join(f'{x:.2f}' for x in load_end)} at the end (other work on the machine shows here)"
        )
    document = {
        "generated_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "elapsed_s": time.perf_counter() - started,
        "load_average_at_end": load_end,
        "results": results,
        "targets": targets,
        "plots": plots,
    }
    write_json(out, document)
    out.with_suffix(".md").write_text("\n".join(markdown), encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.md')} ({document['elapsed_s']:.1f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
