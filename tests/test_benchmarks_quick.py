"""Every benchmark's quick mode runs and writes well-formed results; our limiter's rows count no
violation at the simulator (the only figures asserted: the rest are measurements, not tests).

The benchmarks live outside the package (``benchmarks/``), so they run as ``python -m benchmarks.run
--quick`` from the repository root, exactly as ``make bench-quick`` does. Optional dependencies
(pydantic, ccxt, uvloop, matplotlib, pyinstrument) are not required: their rows report
``skipped: <pkg> not installed``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("decode", "pipeline", "limiter", "fanout", "redis")
#: A quick benchmark takes 2-14 s alone (35-44 s for all four in one run, mostly spawning processes);
#: the bound is for a loaded 2-core machine running the rest of the suite beside it.
TIMEOUT = 300

# Each benchmark runs in its own `python -m benchmarks.run --quick --only NAME`, so that xdist can
# spread them over its workers; the tests of one benchmark share a worker (and its one run). The
# limiter's asserts 0 window violations for our limiter: it runs with the other timing tests.


def _bench(name: str) -> Any:
    mark = pytest.mark.timing if name == "limiter" else pytest.mark.xdist_group(f"bench-{name}")
    return pytest.param(name, marks=mark)


def only(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("name", [_bench(name)])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_RUNS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def quick_results(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``benchmarks.run --quick --only name``, once per session (per xdist worker)."""
    if not (ROOT / "benchmarks" / "run.py").exists():
        pytest.skip("benchmarks/ is not part of this checkout")
    if name not in _RUNS:
        out = tmp_path_factory.mktemp(f"bench-{name}") / "quick.json"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--quick", "--only", name, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        document: dict[str, Any] = json.loads(out.read_text())
        document["_stdout"] = proc.stdout
        document["_md"] = out.with_suffix(".md").read_text()
        _RUNS[name] = document
    return _RUNS[name]


@pytest.mark.parametrize("name", [_bench(n) for n in BENCHMARKS])
def test_document_shape(name: str, quick_results: dict[str, Any]) -> None:
    assert quick_results["quick"] is True
    assert set(quick_results["results"]) == {name}
    machine = quick_results["machine"]
    assert machine["cores"] >= 1 and machine["python"]
    result = quick_results["results"][name]
    assert result["name"] == name
    assert result["rows"], name
    assert _finite(result["elapsed_s"])
    for target in quick_results["targets"]:
        assert target["bench"] == name
        if "value" in target:
            assert _finite(target["value"]), target
            assert isinstance(target["met"], bool)
    assert "### targets" in quick_results["_md"]
    for plot in quick_results["plots"].values():
        assert plot.startswith("skipped") or Path(plot).is_file()


@only("decode")
def test_decode_rows(name: str, quick_results: dict[str, Any]) -> None:
    rows = quick_results["results"]["decode"]["rows"]
    assert {r["payload"] for r in rows} == {"assets", "positions", "wallet"}
    for row in rows:
        if row["approach"] in ("ours_decoder", "ours_parse", "hand", "floor"):
            assert row["status"] == "ok", row
        if row["status"] == "ok":
            assert _finite(row["ms"]) and row["ms"] > 0
            assert _finite(row["ratio_vs_ours"])
        else:
            assert row["status"].startswith("skipped")


@only("pipeline")
def test_pipeline_rows(name: str, quick_results: dict[str, Any]) -> None:
    result = quick_results["results"]["pipeline"]
    keys = {r["key"] for r in result["rows"]}
    assert {"floor", "floor_decode", "ours", "wallet_floor", "wallet_ours", "ccxt"} <= keys
    for row in result["rows"]:
        if row["key"] in ("floor", "ours", "wallet_ours"):
            assert row["status"] == "ok", row
        if row["status"] != "ok":
            assert row["status"].startswith("skipped")
            continue
        assert [p["concurrency"] for p in row["points"]] == result["concurrency"]
        for point in row["points"]:
            assert point["requests"] > 0
            assert _finite(point["rps"]) and point["rps"] > 0
            assert _finite(point["cpu_us_per_request"]) and point["cpu_us_per_request"] > 0


@only("limiter")
def test_limiter_rows(name: str, quick_results: dict[str, Any]) -> None:
    rows = quick_results["results"]["limiter"]["rows"]
    assert {r["variant"] for r in rows} >= {"ours", "ours_fixed", "ours_uncharged", "raw_aiolimiter", "capacity1"}
    wan = {r["variant"]: r for r in rows if r["config"].startswith("WAN jitter")}
    assert set(wan) == {"ours", "ours_fixed"}
    assert wan["ours_fixed"]["margin_reached_ms"] == 25.0
    assert wan["ours"]["margin_reached_ms"] > 25.0  # the WAN's round trips widened it
    for row in rows:
        assert isinstance(row["violations"], int) and row["violations"] >= 0
        if row["variant"] == "ours":  # the baselines' violations are the point of them; ours: none
            assert row["violations"] == 0, {k: row[k] for k in ("config", "margin_s", "send_to_arrival", "late_sends")}
        assert isinstance(row["late_sends"], int) and row["late_sends"] >= 0
        assert _finite(row["send_lag_max_ms"]) and row["send_lag_max_ms"] >= 0
        assert row["requests"] > 0 and row["accepted"] > 0
        assert _finite(row["utilization"]) and row["utilization"] >= 0
        assert row["peak"] >= 1
    single = [r for r in rows if r["keys"] == 1]
    assert single and all(r["series"] for r in single)


@only("fanout")
def test_fanout_rows(name: str, quick_results: dict[str, Any]) -> None:
    result = quick_results["results"]["fanout"]
    rows = result["rows"]
    assert [r["order"] for r in rows] == ["as listed", "interleaved"]
    for row in rows:
        assert row["portfolios"] > 0 and row["polls"] > 0
        assert _finite(row["polls_per_s"]) and row["polls_per_s"] > 0
        assert _finite(row["cpu_us_per_poll"]) and row["cpu_us_per_poll"] > 0
        assert _finite(row["registration_s"])
        assert row["violations"] == 0, row["simulator"]  # every poll goes through our limiter
        assert row["staleness"]["samples"] >= 1 and _finite(row["staleness"]["worst_ratio"])
    memory = rows[0]["tracemalloc_bytes_per_portfolio"]
    assert _finite(memory) and memory > 0
    assert {r["loop"] for r in result["ceiling"]} == {"asyncio", "uvloop"}
    assert [r["gc_frozen"] for r in result["ceiling"] if r["loop"] == "asyncio"] == [False, True]
    for row in result["ceiling"]:
        if "status" in row:
            assert row["status"].startswith("skipped")
            continue
        assert row["polls"] > 0 and _finite(row["polls_per_s"])
        assert 0 <= row["gc"]["share"] < 1 and row["gc"]["full_passes"] >= 0
    profile = result["profile"]
    assert (isinstance(profile, str) and profile.startswith("skipped")) or profile["parts"]


@only("redis")
def test_redis_rows(name: str, quick_results: dict[str, Any]) -> None:
    result = quick_results["results"]["redis"]
    cpu = [r for r in result["rows"] if r["part"] == "cpu"]
    assert {r["backend"] for r in cpu} == {"local", "redis"}
    for row in cpu:
        assert row["polls"] > 0 and _finite(row["cpu_us_per_poll"]) and row["cpu_us_per_poll"] > 0
        assert row["violations_so_far"] == 0
    assert all(r["script_calls"] > 0 for r in cpu if r["backend"] == "redis")
    fleet = {r["backend"]: r for r in result["rows"] if r["part"] == "fleet"}
    assert set(fleet) == {"redis", "local"}
    assert fleet["redis"]["violations"] == 0  # the fleet through Redis never breaks the IP window
    assert fleet["redis"]["accepted"] > 0
    assert _finite(result["cpu_ratio"])
