"""Decode time of this tree against an older revision's, same payloads, same run.

Issue 12 asked that the decode benchmark stay within 5% of the tree before the strict amount
checks (revision ``1cf0517``). That is a comparison across trees, which ``bench_decode`` (one tree,
baselines of other libraries) cannot make, so this script does it::

    python -m benchmarks.decode_vs_rev [--rev 1cf0517] [--rounds 6]

It checks the revision out into a temporary git worktree, writes the three payloads of
``bench_decode`` once (from this tree's generators, so both trees decode the same bytes), and runs
``Endpoint.decoder.decode`` of each tree in fresh interpreters, alternating tree after tree, round
after round: the machine's speed drifts by 2x within minutes, alternation spreads the drift over
both. Each child reports the median of many timed loops; the table shows the median over rounds.

A second table splits each tree's decode into its parts (the bare msgspec decode, the endpoint's
amount checks, the body scan for amount text ``Decimal`` reads but no venue writes, which older
trees do not have) so that the difference has names.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import connex_assets_body, connex_positions_body, print_table, zoomex_wallet_body

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = {
    "ConneX assets, 1000 rows": ("assets", lambda: connex_assets_body(1000)),
    "ConneX positions, 50 rows": ("positions", lambda: connex_positions_body(50)),
    "Zoomex wallet, 8 coins": ("wallet", zoomex_wallet_body),
}

# Runs in a child interpreter with the tree under test first on sys.path. Only the names every
# revision since the benchmarks began has: the endpoint objects and their ``decoder.decode``.
_CHILD = r"""
import json, statistics, sys, timeit
root, folder = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import connex_async
assert connex_async.__file__.startswith(root), connex_async.__file__
from connex_async.venues.connex.api import ASSETS, POSITIONS
from connex_async import decoding
from connex_async.venues.zoomex.api import WALLET_BALANCE

def per_call(fn, body):
    number = max(1, int(0.05 / max(timeit.timeit(lambda: fn(body), number=1), 1e-7)))
    return statistics.median(timeit.repeat(lambda: fn(body), number=number, repeat=15)) / number

out = {}
for name, endpoint in (("assets", ASSETS), ("positions", POSITIONS), ("wallet", WALLET_BALANCE)):
    body = open(f"{folder}/{name}.json", "rb").read()
    decoder = endpoint.decoder
    wire = decoding._EMPTY_MEMBER.sub(b":null", body) if decoder.empty_is_null == "always" else body
    value = decoder._decoder.decode(wire)
    scan = getattr(decoding, "may_hold_unplain_amount", None)  # not in trees before issue 12
    out[name] = {
        "decode": per_call(decoder.decode, body),
        "msgspec": per_call(decoder._decoder.decode, wire),
        "check": per_call(lambda _: decoder.check(value), body),
        "text scan": per_call(scan, body) if scan else 0.0,
    }
print(json.dumps(out))
"""


def _child(tree: Path, folder: Path) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, dict[str, float]] = json.loads(done.stdout)
    return result


def _worktree(rev: str, where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True)


def _drop_worktree(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def run(rev: str, rounds: int) -> dict[str, Any]:
    """Alternate this tree and ``rev`` for ``rounds`` rounds; medians per payload and part."""
    with tempfile.TemporaryDirectory(prefix="decode-vs-rev-") as scratch:
        folder, old = Path(scratch) / "payloads", Path(scratch) / "tree"
        folder.mkdir()
        for file, make in PAYLOADS.values():
            (folder / f"{file}.json").write_bytes(make())
        _worktree(rev, old)
        try:
            samples: dict[str, list[dict[str, dict[str, float]]]] = {"this tree": [], rev: []}
            for _ in range(rounds):
                samples[rev].append(_child(old, folder))
                samples["this tree"].append(_child(ROOT, folder))
        finally:
            _drop_worktree(old)
    return {
        tree: {
            file: {part: statistics.median(s[file][part] for s in runs) for part in runs[0][file]}
            for file, _ in PAYLOADS.values()
        }
        for tree, runs in samples.items()
    }


def report(result: dict[str, Any], rev: str) -> None:
    """Print the comparison and the breakdown."""
    ours, theirs = result["this tree"], result[rev]
    rows = []
    for label, (file, _) in PAYLOADS.items():
        now, then = ours[file]["decode"], theirs[file]["decode"]
        rows.append((label, f"{then * 1e6:,.1f}", f"{now * 1e6:,.1f}", f"{now / then - 1:+.1%}"))
    print_table(
        f"decode: µs per Endpoint.decoder.decode, {rev} vs this tree", ["payload", rev, "this tree", "change"], rows
    )
    parts = []
    for label, (file, _) in PAYLOADS.items():
        for tree, p in ((rev, theirs[file]), ("this tree", ours[file])):
            parts.append((label, tree, *(f"{p[k] * 1e6:,.1f}" for k in ("decode", "msgspec", "check", "text scan"))))
    columns = ["payload", "tree", "decode", "msgspec alone", "amount checks", "text scan"]
    print_table("decode in parts (µs; the parts are timed apart, so they need not add up)", columns, parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="1cf0517", help="the revision to compare with (default: before issue 12)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    args = parser.parse_args()
    report(run(args.rev, args.rounds), args.rev)


if __name__ == "__main__":
    main()
