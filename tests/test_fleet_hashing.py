"""Rendezvous hashing and static shards: stable across processes, balanced, few moves on a change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from connex_async.fleet.hashing import Rendezvous, Shard, owner, weight

LABELS = [f"desk-{i:05d}" for i in range(10_000)]


def test_weight_is_blake2b_not_python_hash() -> None:
    # A pinned value: any change of the hash (or a switch to the per-process salted hash()) moves
    # every portfolio of a running fleet, so it must be deliberate.
    assert weight("0", "cx-0001") == weight("0", "cx-0001")
    assert weight("0", "cx-0001") != weight("1", "cx-0001")
    assert weight("ab", "c") != weight("a", "bc")  # member and label cannot run into each other
    spec = hashlib.blake2b(b"1:0cx-0001", digest_size=8).digest()  # "<len(member)>:<member><label>"
    assert weight("0", "cx-0001") == int.from_bytes(spec, "big") == 0x8AD35AC37AD55560


def test_owner_agrees_across_processes_with_different_hash_seeds() -> None:
    members = ["w-a", "w-b", "w-c", "w-d"]
    here = {label: owner(label, members) for label in LABELS[:500]}
    script = (
        "import json, sys; from connex_async.fleet.hashing import owner; "
        "labels = json.load(sys.stdin); "
        f"print(json.dumps({{l: owner(l, {members!r}) for l in labels}}))"
    )
    for seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(LABELS[:500]),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            timeout=30,
        )
        assert json.loads(proc.stdout) == here


def test_rendezvous_assign_matches_owner_and_covers_every_label_once() -> None:
    members = ["w-1", "w-2", "w-3"]
    table = Rendezvous(LABELS[:2000])
    assigned = table.assign(members)
    assert sorted(label for labels in assigned.values() for label in labels) == sorted(LABELS[:2000])
    for member, labels in assigned.items():
        for label in labels[:200]:
            assert owner(label, members) == member
    assert table.assign([]) == {}
    assert Rendezvous(["x"]).assign(["w-1", "w-2"]) in ({"w-1": ["x"], "w-2": []}, {"w-1": [], "w-2": ["x"]})
    with pytest.raises(ValueError, match="unique"):
        Rendezvous(["a", "a"])


@pytest.mark.parametrize("n", [2, 3, 5])
def test_balance_within_ten_percent_on_10k_labels(n: int) -> None:
    counts = Counter(owner(label, [f"member-{i}" for i in range(n)]) for label in LABELS)
    fair = len(LABELS) / n
    assert len(counts) == n
    for member, count in counts.items():
        assert abs(count - fair) <= 0.10 * fair, (member, count, fair)


def test_a_member_leaving_moves_only_its_own_labels() -> None:
    members = [f"member-{i}" for i in range(4)]
    table = Rendezvous(LABELS)
    before = {label: m for m, labels in table.assign(members).items() for label in labels}
    after = {label: m for m, labels in table.assign(members[:3]).items() for label in labels}
    moved = {label for label in LABELS if before[label] != after[label]}
    assert moved == {label for label in LABELS if before[label] == "member-3"}


def test_a_member_joining_takes_about_its_share_and_nothing_else_moves() -> None:
    table = Rendezvous(LABELS)
    before = {label: m for m, labels in table.assign(["a", "b", "c"]).items() for label in labels}
    after = {label: m for m, labels in table.assign(["a", "b", "c", "d"]).items() for label in labels}
    moved = [label for label in LABELS if before[label] != after[label]]
    assert all(after[label] == "d" for label in moved)
    assert abs(len(moved) - len(LABELS) / 4) <= 0.1 * len(LABELS) / 4


def test_changing_the_shard_count_moves_few_portfolios() -> None:
    def shards(n: int) -> dict[str, int]:
        return {label: i for i in range(n) for label in Shard(i, n).select(LABELS)}

    three, four = shards(3), shards(4)
    assert len(three) == len(four) == len(LABELS)  # every label in exactly one shard
    moved = sum(three[label] != four[label] for label in LABELS)
    assert moved <= 0.30 * len(LABELS)  # ~1/4 move; `hash % n` would move ~3/4
    assert all(four[label] == 3 for label in LABELS if three[label] != four[label])


def test_shard_select_and_owns_agree() -> None:
    shard = Shard(1, 3)
    chosen = shard.select(LABELS[:3000])
    assert chosen == [label for label in LABELS[:3000] if shard.owns(label)]
    assert abs(len(chosen) - 1000) <= 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1/4 ", Shard(1, 4))],
)
def test_shard_parse(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected
    assert str(expected) == text.strip()


def test_shard_zero_of_one_is_everything() -> None:
    assert Shard(0, 1).select(LABELS) == LABELS
    assert all(Shard(0, 1).owns(label) for label in LABELS[:100])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/2", r"shard 3/2: the index must be below the count \(0 <= i < 2\)"),
        ("2/2", r"shard 2/2: the index must be below the count"),
        ("a/b", r"shard must be i/n with whole numbers 0 <= i < n \(e\.g\. 0/3\), got 'a/b'"),
        ("0/0", r"shard 0/0: the shard count must be at least 1"),
        ("-1/2", r"shard -1/2: the index must be >= 0"),
        ("1", r"shard must be i/n"),
        ("1/2/3", r"shard must be i/n"),
        ("", r"shard must be i/n"),
        ("\u0661/\u0662", r"shard must be i/n"),  # non-ASCII digits are not numbers here
    ],
)
def test_shard_parse_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Shard.parse(text)
    assert "\n" not in str(info.value)
