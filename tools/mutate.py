"""Break the package one line at a time and check that a test notices (``make mutate``).

Each breakage in ``tools/breakages.toml`` names a file, a snippet of it, what to put instead and
the tests that must fail. For each one, in turn, this script copies the repository's files (what
git tracks, plus new files not ignored) to a scratch directory, applies the breakage there, runs
the listed tests against that copy (``PYTHONPATH`` points at it; the import location is checked)
and reports whether a test failed (**caught**) or all passed (**SURVIVED**). The repository itself
is never touched.

A snippet that is not in its file, or is there more than once, is reported as such (**NOT
APPLIED**) and fails the run: after a refactor, the list must be updated, not silently skipped.
A breakage that does not compile is reported too: a syntax error would be caught for nothing.

    python tools/mutate.py                        # every breakage, its listed tests
    python tools/mutate.py --only pool-body-limit,quarantine-default
    python tools/mutate.py --tests-ref 7ffd4e3 --all-tests   # an older suite, all of it, per breakage

Exit status 0 only if every breakage was applied and caught. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LIST = ROOT / "tools" / "breakages.toml"
#: A fixed seed, so that a run can be repeated exactly (tests/conftest.py seeds `random` from it).
SEED = "20261201"
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
ERROR_LINE = re.compile(r"^E\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Breakage:
    name: str
    promise: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    also: tuple[tuple[str, str], ...] = ()  # more (original, replacement) in the same file: one breakage


@dataclass
class Outcome:
    breakage: Breakage
    status: str  # caught | SURVIVED | NOT APPLIED | TIMEOUT
    detail: str
    seconds: float


def load(path: Path) -> list[Breakage]:
    with path.open("rb") as f:
        document = tomllib.load(f)
    found = []
    for entry in document["breakage"]:
        found.append(
            Breakage(
                name=entry["name"],
                promise=entry["promise"],
                file=entry["file"],
                original=entry["original"],
                replacement=entry["replacement"],
                tests=tuple(entry["tests"]),
                also=tuple((o, r) for o, r in entry.get("also", [])),
            )
        )
    names = [b.name for b in found]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"{path}: duplicate names {sorted(duplicates)}")
    return found


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def make_scratch(tests_ref: str | None) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="connex-mutate-"))
    for rel in tracked_files():
        if tests_ref is not None and rel.startswith("tests/"):
            continue
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    if tests_ref is not None:  # the test suite as it was at that commit
        names = subprocess.run(
            ["git", "ls-tree", "-r", "-z", "--name-only", tests_ref, "tests"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout.decode()
        for rel in filter(None, names.split("\0")):
            blob = subprocess.run(["git", "show", f"{tests_ref}:{rel}"], cwd=ROOT, check=True, capture_output=True)
            target = scratch / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.stdout)
    return scratch


def environment(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), *filter(None, [env.get("PYTHONPATH")])])
    env["CONNEX_TEST_SEED"] = env.get("CONNEX_TEST_SEED") or SEED
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports_from(scratch: Path, env: dict[str, str]) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import connex_async; print(connex_async.__file__)"],
        cwd=scratch,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(scratch.resolve()):
        raise SystemExit(f"connex_async imports from {where}, not from the scratch copy {scratch}: cannot mutate")


def pytest_command(tests: list[str], extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", *extra, *tests]


def run_tests(
    scratch: Path, env: dict[str, str], tests: list[str], extra: list[str], timeout: float
) -> tuple[int, str]:
    try:
        command = pytest_command(tests, extra)
        proc = subprocess.run(
            command, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return -1, out
    return proc.returncode, proc.stdout + proc.stderr


def apply(scratch: Path, breakage: Breakage) -> str | None:
    """Apply the breakage in the scratch copy; return why it could not be, or None."""
    path = scratch / breakage.file
    if not path.is_file():
        return f"{breakage.file} does not exist"
    broken = path.read_text()
    for original, replacement in ((breakage.original, breakage.replacement), *breakage.also):
        count = broken.count(original)
        if count != 1:
            return f"snippet found {count} times in {breakage.file} (must be exactly once): {original!r}"
        broken = broken.replace(original, replacement)
    if path.suffix == ".py":
        try:
            compile(broken, str(path), "exec")
        except SyntaxError as exc:
            return f"the broken file does not compile: {exc}"
    path.write_text(broken)
    return None


def mutate(
    breakages: list[Breakage], scratch: Path, env: dict[str, str], all_tests: bool, extra: list[str], timeout: float
) -> list[Outcome]:
    outcomes = []
    for n, breakage in enumerate(breakages, 1):
        print(f"[{n}/{len(breakages)}] {breakage.name}: {breakage.file}", flush=True)
        path = scratch / breakage.file
        pristine = path.read_bytes() if path.is_file() else None
        started = time.monotonic()
        try:
            problem = apply(scratch, breakage)
            if problem is not None:
                outcomes.append(Outcome(breakage, "NOT APPLIED", problem, 0.0))
                continue
            tests = ["tests"] if all_tests else list(breakage.tests)
            code, output = run_tests(scratch, env, tests, extra, timeout)
        finally:
            if pristine is not None:
                path.write_bytes(pristine)
        seconds = time.monotonic() - started
        if code == -1:
            outcomes.append(Outcome(breakage, "TIMEOUT", f"no result within {timeout:.0f} s", seconds))
        elif code == 0:
            outcomes.append(Outcome(breakage, "SURVIVED", "every listed test passed", seconds))
        elif code == 1:
            failed = FAILED_LINE.findall(output)
            why = ERROR_LINE.findall(output)
            detail = (failed[0] if failed else "a test failed") + (f"\n      {why[0][:160]}" if why else "")
            outcomes.append(Outcome(breakage, "caught", detail, seconds))
        else:
            tail = "\n".join(output.strip().splitlines()[-5:])
            outcomes.append(Outcome(breakage, "NOT APPLIED", f"pytest exited {code}:\n{tail}", seconds))
        last = outcomes[-1]
        print(f"    {last.status} ({last.seconds:.1f} s): {last.detail}", flush=True)  # with the failed assertion
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST, help="the breakages (TOML)")
    parser.add_argument("--only", default="", help="comma-separated breakage names")
    parser.add_argument("--tests-ref", help="run the tests/ of this git commit instead of the working tree's")
    parser.add_argument("--all-tests", action="store_true", help="run the whole suite for each breakage")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on the unbroken copy")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per breakage (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    breakages = load(args.list)
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {b.name for b in breakages}
        if unknown:
            raise SystemExit(f"unknown breakage(s): {sorted(unknown)}")
        breakages = [b for b in breakages if b.name in wanted]

    scratch = make_scratch(args.tests_ref)
    env = environment(scratch)
    print(f"scratch copy: {scratch} (seed {env['CONNEX_TEST_SEED']}; tests from {args.tests_ref or 'the work tree'})")
    try:
        check_imports_from(scratch, env)
        if not args.no_baseline:
            tests = ["tests"] if args.all_tests else sorted({t for b in breakages for t in b.tests})
            print(f"baseline: {len(tests)} test selections on the unbroken copy ...", flush=True)
            code, output = run_tests(scratch, env, tests, args.pytest_args, args.timeout * 2)
            if code != 0:
                print(output[-5000:])
                print("the listed tests fail (or time out) without any breakage: fix them first")
                return 2
        outcomes = mutate(breakages, scratch, env, args.all_tests, args.pytest_args, args.timeout)
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    width = max(len(o.breakage.name) for o in outcomes) if outcomes else 0
    print("\nbreakage".ljust(width + 3) + "result       caught by / why")
    for o in outcomes:
        print(f"  {o.breakage.name.ljust(width)}  {o.status.ljust(11)}  {o.detail.splitlines()[0]}")
    survived = [o for o in outcomes if o.status == "SURVIVED"]
    not_applied = [o for o in outcomes if o.status in ("NOT APPLIED", "TIMEOUT")]
    caught = len(outcomes) - len(survived) - len(not_applied)
    print(
        f"\n{len(outcomes)} breakages: {caught} caught, {len(survived)} survived"
        + (f" ({', '.join(o.breakage.name for o in survived)})" if survived else "")
        + f", {len(not_applied)} not applied or timed out"
        + (f" ({', '.join(o.breakage.name for o in not_applied)})" if not_applied else "")
    )
    return 0 if not survived and not not_applied else 1


if __name__ == "__main__":
    raise SystemExit(main())
