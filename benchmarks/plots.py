"""PNG plots from benchmark results (matplotlib, Agg backend); skipped without matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import not_installed, optional

__all__ = ["make_plots"]

_COLORS = {"ours": "tab:green", "raw_aiolimiter": "tab:red", "capacity1": "tab:orange", "ours_uncharged": "tab:blue"}


def make_plots(results: dict[str, Any], directory: Path, prefix: str = "") -> dict[str, str]:
    """Write every plot the results allow; return ``{name: path or skip reason}``.

    ``prefix`` keeps a quick run's plots (``quick_*.png``) from replacing the full run's.
    """
    matplotlib = optional("matplotlib")
    if matplotlib is None:
        return {"plots": not_installed("matplotlib")}
    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if "limiter" in results:
        made["limiter_windows"] = _limiter_windows(results["limiter"], directory / f"{prefix}limiter_windows.png")
    if "pipeline" in results:
        made["pipeline_throughput"] = _throughput(results["pipeline"], directory / f"{prefix}pipeline_throughput.png")
    return made


def _limiter_windows(result: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("series")]
    if not rows:
        return "skipped: no single-key series"
    count, period = rows[0]["limit"]
    top = max(max(n for _, n, _ in r["series"]) for r in rows) + 2
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 2.0 + 1.6 * len(rows)), dpi=110, sharex=True, squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        series = row["series"]
        color = _COLORS.get(row["variant"])
        ax.step([t for t, _, _ in series], [n for _, n, _ in series], where="post", color=color, lw=1.2)
        over = [(t, n) for t, n, bad in series if bad]
        if over:
            ax.scatter([t for t, _ in over], [n for _, n in over], color="black", s=12, zorder=3, label="violation")
            ax.legend(loc="lower right", fontsize=8)
        ax.axhline(count, color="black", ls="--", lw=0.8)
        ax.set_ylim(0, top)
        ax.set_ylabel("in window")
        ax.set_title(
            f"{row['label']}: {row['violations']} violations, {100 * row['utilization']:.1f}% of nominal", fontsize=9
        )
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since start")
    fig.suptitle(
        f"Arrivals the simulator counted in its sliding {period:g} s window, at each arrival "
        f"(limit {count}, dashed; 1 key, 50 callers, {JITTER_TEXT})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


JITTER_TEXT = "20 ms jitter"


def _throughput(result: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("status") == "ok"]
    if not rows:
        return "skipped: no pipeline rows"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for row in rows:
        xs = [p["concurrency"] for p in row["points"]]
        style = "--" if row["payload"] == "wallet" else "-"
        label = f"{row['payload']}: {row['label']}"
        left.plot(xs, [p["rps"] for p in row["points"]], style, marker="o", label=label)
        right.plot(xs, [p["cpu_us_per_request"] for p in row["points"]], style, marker="o", label=label)
    for ax, ylabel in ((left, "requests/s"), (right, "client CPU µs per request")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(result["concurrency"], [str(c) for c in result["concurrency"]])
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    left.set_title("Throughput vs concurrency (one client core)")
    right.set_title("Client CPU per request")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return str(path)
