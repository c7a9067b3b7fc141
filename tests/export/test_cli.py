"""`python -m export` as a user runs it: a real subprocess, real files, one-line errors."""
from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile

import onnx
import pytest

from tests.conftest import ROOT, cli_env, run_module
from toolkit.runs import ExportRecord

from .conftest import INT8_TEST_AGREEMENT


def _one_line_error(proc, code: int, pattern: str):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("alexnet-export:")]
    assert len(lines) == 1 and pattern in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_full_export_with_variants(trained_alexnet_path, fashion_mnist_dir, tmp_path):
    from export.opsets import default_opset

    out = tmp_path / "alexnet.onnx"
    proc = run_module("export", trained_alexnet_path, "-o", out, "--data-dir", fashion_mnist_dir,
                      "--samples", 64, "--calibration-samples", 64, "--int8-min-agreement", INT8_TEST_AGREEMENT,
                      COLUMNS="160")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"alexnet.onnx", "alexnet.float16.onnx", "alexnet.int8.onnx",
                                                    "alexnet.onnx.json"}
    record = ExportRecord.read(tmp_path / "alexnet.onnx.json")
    assert record.config["dataset"] == "fashion_mnist"          # found in summary.json beside the model
    assert record.verification_inputs == "64 fashion_mnist test images"
    files = {f.variant: f for f in record.files}
    assert files["float32"].vs_keras.max_abs_diff <= 1e-4
    assert files["float16"].vs_keras.max_abs_diff <= 1e-2
    assert files["int8"].vs_float32.top1_agreement >= INT8_TEST_AGREEMENT
    assert files["float32"].vs_float32 is None
    assert files["int8"].size_bytes < files["float16"].size_bytes < files["float32"].size_bytes
    assert "CPUExecutionProvider" in files["int8"].providers
    assert record.export.opset == default_opset()
    assert record.environment["packages"]["tf2onnx"]
    for name in ("alexnet.onnx", "alexnet.float16.onnx", "alexnet.int8.onnx", "top-1 = float32"):
        assert name in proc.stderr


@pytest.mark.parametrize("option, failed", [
    ("--tolerance", "alexnet.onnx"),
    ("--float16-tolerance", "alexnet.float16.onnx"),
])
def test_a_failed_check_exits_1_and_leaves_no_file(trained_alexnet_path, tmp_path, option, failed):
    """The set is put in place whole or not at all: a failed variant leaves no float32 file either."""
    proc = run_module("export", trained_alexnet_path, "-o", tmp_path / "alexnet.onnx", "--dataset", "fashion_mnist",
                      "--variants", "float16", option, "1e-9", "--samples", 16)
    assert proc.returncode == 1, proc.stderr
    assert f"alexnet-export: check failed: {failed}: max |difference| from keras" in proc.stderr
    assert not list(tmp_path.iterdir())          # no temporary files, no record


@pytest.mark.parametrize("args, pattern", [
    (["{missing}", "-o", "{out}"], "does not exist"),
    (["{junk}", "-o", "{out}"], "is not a loadable Keras model"),
    (["{two_inputs}", "-o", "{out}"], "only single-input, single-output models are supported"),
    (["{model}", "-o", "{tmp}/no/such/dir/a.onnx"], "output directory"),
    (["{model}", "-o", "{out}", "--opset", "99"], "opset 99 is not supported by the installed tools"),
    (["{model}", "-o", "{out}", "--opset", "x"], "argument --opset: invalid int value: 'x'"),
    (["-o", "{out}"], "the following arguments are required: model"),
    (["{model}", "-o", "{out}", "--method", "quick"], "argument --method: invalid choice: 'quick'"),
    (["{model}", "-o", "{out}", "--variants", "int8", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["{plain}", "-o", "{out}", "--variants", "int8"], "the int8 variant is calibrated on real images"),
    (["{model}", "-o", "{out}", "--tolerance", "-1"], "--tolerance must be a finite number >= 0"),
    (["{model}", "-o", "{tmp}/a.txt"], "must end in .onnx"),
    (["{model}", "-o", "{out}", "--no-rewrite", "batchnorm,fuse-all"], "unknown rewrite(s) fuse-all: use "),
    (["{model}", "-o", "{out}", "--rewrites", "constant-folding,nope"], "unknown rewrite(s) nope: use "),
])
def test_bad_input_is_one_line_and_exit_2(trained_alexnet_path, tmp_path, args, pattern):
    import keras

    junk = tmp_path / "junk.keras"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("hello.txt", "a zip, but not a Keras model")
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    two_inputs = tmp_path / "two.keras"
    if "{two_inputs}" in args:
        a, b = keras.Input((3,)), keras.Input((3,))
        keras.Model([a, b], keras.layers.Add()([a, b])).save(two_inputs)
    names = dict(missing=tmp_path / "absent.keras", junk=junk, two_inputs=two_inputs, model=trained_alexnet_path,
                 plain=plain, out=tmp_path / "out.onnx", tmp=tmp_path)
    proc = run_module("export", *[a.format(**names) for a in args])
    _one_line_error(proc, 2, pattern)
    assert not (tmp_path / "out.onnx").exists()


def test_pipeline_with_nchw_input_feeds_variants_in_nchw(trained_alexnet_path, tmp_path):
    from rich.console import Console

    from export.job import ExportJob
    from export.pipeline import run

    job = ExportJob(model=str(trained_alexnet_path), output=str(tmp_path / "nchw.onnx"), nchw=True,
                    variants=("float16", "int8"), samples=16, calibration_samples=32,
                    int8_min_agreement=INT8_TEST_AGREEMENT)
    console = io.StringIO()
    record = run(job, Console(file=console, width=160))
    assert record.export.layout == "NCHW" and record.export.input_shape == ["batch", 1, 28, 28]
    assert [f.variant for f in record.files] == ["float32", "float16", "int8"]
    assert all(f.vs_keras.top1_agreement >= INT8_TEST_AGREEMENT for f in record.files)
    assert ExportRecord.read(tmp_path / "nchw.onnx.json").files == record.files   # it returns what it wrote
    assert "nchw.int8.onnx" in console.getvalue()


@pytest.mark.parametrize("options, ran", [
    (["--no-rewrite", "affine-into-gemm", "--no-rewrite", "affine-into-conv,repeat-into-conv"],
     ["constant-folding", "resize-as-matmul", "batchnorm", "affine-past-maxpool", "batchnorm-as-conv"]),
    (["--rewrites", "none"], []),
    (["--rewrites", "batchnorm,constant-folding"], ["constant-folding", "batchnorm"]),
])
def test_rewrites_are_switched_and_recorded(trained_alexnet_path, tmp_path, options, ran):
    out = tmp_path / "alexnet.onnx"
    proc = run_module("export", trained_alexnet_path, "-o", out, "--variants", "none", "--samples", 16, *options)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "alexnet.onnx.json").read_text())
    assert record["config"]["rewrites"] == ran and list(record["export"]["rewrites"]) == ran
    metadata = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(metadata["rewrites"]) == record["export"]["rewrites"]
    # tf2onnx's Mul/Add become BatchNormalization nodes, which batchnorm-as-conv then writes as Convs.
    has_batchnorm = "BatchNormalization" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert has_batchnorm == ("batchnorm" in ran and "batchnorm-as-conv" not in ran)


EXPORT_THEN_SAY_IF_TENSORFLOW_LOADED = """
import sys
from export.cli import main
code = main(sys.argv[1:])
print("tensorflow imported" if "tensorflow" in sys.modules else "tensorflow not imported", code)
"""


def test_a_read_only_output_directory_is_refused_before_the_conversion(tmp_path):
    """In a mount namespace of its own (nothing is mounted for anyone else), -o's directory mounted read-only:
    root can write through file modes, not to a read-only file system."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a read-only directory")
    (tmp_path / "model.keras").write_bytes(b"never read")
    out = tmp_path / "ro"
    out.mkdir()
    command = shlex.join([sys.executable, "-c", EXPORT_THEN_SAY_IF_TENSORFLOW_LOADED, str(tmp_path / "model.keras"),
                          "-o", str(out / "alexnet.onnx")])
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {out} {out} && {command}"], cwd=ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.stderr.splitlines() == [f"alexnet-export: error: output directory {out} is not writable: "
                                        "choose another path"], done.stderr
    assert done.stdout.split() == ["tensorflow", "not", "imported", "2"]
    assert not list(out.iterdir())
