"""mypy over the packages, so a changed signature fails `make test` instead of a user's job.

    .venv/bin/pytest tests/test_types.py -q
    .venv/bin/mypy            # the same check by hand; settings in pyproject.toml's [tool.mypy]

mypy keeps its cache in .mypy_cache, so a run after a small change takes seconds.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, capture_output=True, text=True)


def test_packages_type_check():
    result = mypy(cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_call_with_the_wrong_number_of_arguments_is_flagged(tmp_path):
    # The bug that made this check: a caller kept passing one argument after the signature grew to three.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "launch.py").write_text(
        textwrap.dedent(
            """
            def hostnames(nodelist: str, scontrol: str, timeout: float) -> list[str]:
                return [nodelist, scontrol, str(timeout)]
            """
        )
    )
    (package / "train.py").write_text("from pkg.launch import hostnames\n\nHOSTS = hostnames('node[1-3]')\n")
    result = mypy("--cache-dir", str(tmp_path / "cache"), "pkg", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'pkg/train.py:3: error: Missing positional arguments "scontrol", "timeout" in call to "hostnames"' in (
        result.stdout
    )
