"""Every snippet in README.md runs as written (and type-checks), so that the README stays true.

- ``python`` blocks are complete programs: each runs in a fresh interpreter, in an empty directory,
  without venue keys in the environment (so that they use the embedded simulator), and all of them
  pass ``mypy --strict``. A block with ``def test_`` functions is a user's test file: it runs under
  pytest in an empty directory with no configuration and no pytest-asyncio, as after
  ``pip install "connex-async[testing]"``.
- ``sh`` blocks: every ``connex-async`` command line parses with the real parser, every ``make``
  target exists, every ``pip install`` names extras that exist.
- ``toml`` blocks are credentials files that load.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from connex_async.cli import build_parser
from connex_async.config import load_file

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```$", README, re.MULTILINE | re.DOTALL)
SECTIONS = {body: re.findall(r"^## (.+)$", README[: README.index(body)], re.MULTILINE)[-1] for _, body in BLOCKS}
PYTHON = [body for lang, body in BLOCKS if lang == "python"]
PROGRAMS = [body for body in PYTHON if "def test_" not in body]
TEST_FILES = [body for body in PYTHON if "def test_" in body]


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CONNEX_", "ZOOMEX_"))}


def test_the_readme_has_the_snippets_this_file_expects() -> None:
    assert len(PROGRAMS) >= 4 and len(TEST_FILES) == 1
    assert {lang for lang, _ in BLOCKS} <= {"python", "sh", "toml", ""}


@pytest.mark.parametrize("body", PROGRAMS, ids=[SECTIONS[b] for b in PROGRAMS])
def test_each_python_snippet_runs_as_written(body: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(body)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def test_the_pytest_snippet_passes_in_a_project_without_configuration(tmp_path: Path) -> None:
    (body,) = TEST_FILES
    (tmp_path / "test_bot.py").write_text(body)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:anyio", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    tests = body.count("\ndef test_") + body.count("\nasync def test_")
    assert f"{tests} passed" in proc.stdout, f"{proc.stdout}\n{proc.stderr}"
    assert "warning" not in proc.stdout.lower() and "failed" not in proc.stdout, proc.stdout


def test_every_python_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    files = []
    for i, body in enumerate(PYTHON):
        path = tmp_path / f"snippet_{i}.py"
        path.write_text(body)
        files.append(str(path))
    # From the project root: mypy finds connex_async there and reuses `make typecheck`'s cache.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def shell_commands() -> list[list[str]]:
    """Each command of the ``sh`` blocks as words: comments, ``VAR=value`` prefixes, pipes, ``&`` dropped."""
    commands = []
    for lang, body in BLOCKS:
        if lang != "sh":
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            for i, word in enumerate(words):
                if word in ("|", "&", ">", ">>") or word.startswith(("|", ">")):
                    words = words[:i]
                    break
            if words:
                commands.append(words)
    return commands


def test_every_shell_line_is_a_real_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    seen = set()
    for words in shell_commands():
        program = words[0]
        seen.add(program)
        if program == "connex-async":
            try:
                build_parser().parse_args(words[1:])
            except SystemExit as exc:
                pytest.fail(f"README: `{shlex.join(words)}` does not parse (exit {exc.code})")
        elif program == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.MULTILINE), words
        elif program == "pip":
            assert words[1] == "install", words
            for spec in words[2:]:
                name, _, rest = spec.partition("[")
                assert name == "connex-async", spec
                assert set(rest.rstrip("]").split(",")) - {""} <= extras, spec
        else:
            pytest.fail(f"README shows a command this test does not check: {shlex.join(words)}")
    assert {"connex-async", "make", "pip"} <= seen


def test_every_toml_snippet_is_a_credentials_file_that_loads(tmp_path: Path) -> None:
    bodies = [body for lang, body in BLOCKS if lang == "toml"]
    assert bodies
    for i, body in enumerate(bodies):
        path = tmp_path / f"portfolios_{i}.toml"
        path.write_text(body)
        assert load_file(path)


def test_every_public_name_is_in_the_readme() -> None:
    import connex_async
    import connex_async.testing

    names = [*connex_async.__all__, "PrometheusExporter", "SimulatedVenue", "Fault", "VenueFactory"]
    missing = [name for name in names if f"`{name}" not in README and f"{name}(" not in README]
    assert not missing, f"exported but never mentioned in README.md: {missing}"
