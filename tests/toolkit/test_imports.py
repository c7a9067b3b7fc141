"""Light imports: help, dry runs and reports start without TensorFlow or onnxruntime, and
bench/ and slurm/ never import the training package.

Each command runs in a fresh interpreter (as `python -m MODULE ARGS`); afterwards the test
lists which heavy frameworks ended up in sys.modules. Importing TensorFlow alone takes
seconds here, and a login node or a GPU box may not have it at all.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env

HEAVY = ("tensorflow", "keras", "onnxruntime", "onnx", "tf2onnx", "horovod")
BENCH_COMMANDS = ("throughput", "latency", "sweep", "compare", "overhead", "train", "load", "check", "profile", "tune",
                  "report")
PROBE = """
import runpy, sys
sys.argv = [{module!r}] + {args!r}
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
# sys.stderr, not sys.__stderr__: a command that drops native stderr (toolkit.cli.quiet_native_stderr) points
# file descriptor 2 at /dev/null and keeps its own messages on sys.stderr.
print("HEAVY=" + ",".join(heavy), "CODE=" + str(code), file=sys.stderr)
"""


def heavy_modules(module: str, *args: str, cwd=None) -> tuple[list[str], str]:
    code = PROBE.format(module=module, args=list(args), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(),
                          cwd=cwd or ROOT, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("HEAVY="), done.stderr[-2000:]
    heavy, exit_code = last.split(" ")
    return [h for h in heavy.removeprefix("HEAVY=").split(",") if h], exit_code.removeprefix("CODE=")


@pytest.mark.parametrize("module,args", [
    ("alexnet.train", ["--help"]),
    ("alexnet.benchmark", ["--help"]),
    ("export", ["--help"]),
    ("export.benchmark", ["--help"]),
    ("bench", ["--help"]),
    *(("bench", [command, "--help"]) for command in BENCH_COMMANDS),
    ("bench.gpucheck", ["--help"]),
    ("bench.graphpack", ["--help"]),
    ("slurm.submit", ["--help"]),
    ("slurm.submit", ["status", "--help"]),
    ("slurm.submit", ["train", "--nodes", "2", "--dry-run"]),
    ("slurm.submit", ["export", "--dry-run"]),
    ("slurm.submit", ["bench", "--batch", "1,8", "--provider", "cuda", "--dry-run"]),
    ("slurm.launch", ["--help"]),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_help_and_dry_runs_import_no_framework(module, args):
    heavy, code = heavy_modules(module, *args)
    assert code == "0"
    assert heavy == [], f"`python -m {module} {' '.join(args)}` imported {heavy}"


def test_bench_report_and_check_run_without_a_framework(tmp_path):
    from tests.bench.test_report import fixed_result, load_result, profile_result, tune_result

    path, load = tmp_path / "r.json", tmp_path / "load.json"
    path.write_text(json.dumps(fixed_result().to_json()))
    load.write_text(json.dumps(load_result().to_json()))
    profile, tune = tmp_path / "profile.json", tmp_path / "tune.json"
    profile.write_text(json.dumps(profile_result().to_json()))
    tune.write_text(json.dumps(tune_result().to_json()))
    heavy, code = heavy_modules("bench", "report", str(path), str(load), str(profile), str(tune), "--export",
                                str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html"), "--export",
                                str(tmp_path / "r.csv"), "--plot-dir", str(tmp_path), cwd=tmp_path)
    assert code == "0" and (tmp_path / "r.md").is_file() and (tmp_path / "r.html").is_file()
    page = (tmp_path / "r.html").read_text()
    assert "where the time went" in page and "op types" in page and "Pareto front" in page
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "r-pareto.csv").is_file()
    assert heavy == []
    heavy, code = heavy_modules("bench", "check", str(path), "--baseline", str(path), "--quiet", cwd=tmp_path)
    assert code == "0" and heavy == []


def test_the_probe_sees_a_framework_when_one_is_imported():
    heavy, code = heavy_modules("toolkit.onnxfile")
    assert code == "0" and heavy == ["onnx", "onnxruntime"]


@pytest.mark.parametrize("package", ["bench", "slurm", "toolkit"])
def test_package_never_imports_the_training_package(package):
    """They run where only onnxruntime (or only SLURM) is installed; Keras files go through toolkit.kerasfile."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.split(".")[0] in ("alexnet", "export") for n in names), \
                f"{path.relative_to(ROOT)}:{node.lineno} imports {names}"
