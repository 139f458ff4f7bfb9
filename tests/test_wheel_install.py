"""From the wheel alone, as a new user: build it, install it with the ``testing`` extra in a fresh
virtualenv, and run a user's test files in an empty directory with no configuration of theirs.

Needs the package index that ``make test`` itself installs from (for setuptools and the dependencies).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_pytest_plugin import USER_TESTS

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", ".hypothesis", "results"
)


def sh(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def readme_test_file() -> str:
    readme = (ROOT / "README.md").read_text()
    (body,) = [b for b in re.findall(r"^```python\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL) if "def test_" in b]
    return body


def test_the_wheel_with_the_testing_extra_runs_a_users_tests_with_no_configuration(tmp_path: Path) -> None:
    source, dist, venv, project = (tmp_path / name for name in ("source", "dist", "venv", "project"))
    shutil.copytree(ROOT, source, ignore=IGNORE)  # build from a copy: nothing is written into the checkout
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("connex_async-*.whl")
    sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    python = venv / "bin" / "python"
    sh(python, "-m", "pip", "install", "-q", f"{wheel}[testing]", cwd=tmp_path, env=env)
    installed = sh(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path, env=env).lower()
    assert "pytest==" in installed and "pytest-asyncio" not in installed and "anyio" not in installed
    project.mkdir()
    (project / "test_bot.py").write_text(readme_test_file())
    (project / "test_more.py").write_text(USER_TESTS)
    out = sh(python, "-m", "pytest", cwd=project, env=env)
    assert re.search(r"\b7 passed\b", out), out
    assert "warning" not in out.lower(), out
    assert f"rootdir: {project}" in out and "configfile" not in out, out  # no configuration was found
    assert sh(venv / "bin" / "connex-async", "--version", cwd=project, env=env) == "connex-async 0.1.0\n"
