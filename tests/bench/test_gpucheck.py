"""The GPU check: graph packs (the model's graph alone, weights regenerated from a seed), the CPU half of
scripts/gpu-check.sh as a subprocess, and `gpu` tests of CUDA's numbers that skip where CUDA is not usable."""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from bench import gpucheck, graphpack, results
from bench.engines import OnnxEngine
from bench.inputs import InputConfig
from bench.measure import measure_engine
from bench.results import Row
from bench.runner import RunConfig
from bench.session import SessionConfig, create_session, cuda_usable
from tests.conftest import ROOT
from toolkit.cli import CheckFailed, UsageError

PACKS = ROOT / "scripts" / "gpu-check-models"
CUDA = cuda_usable()


def test_a_packed_graph_runs_on_weights_regenerated_alike_from_the_seed(helper_models, tmp_path):
    heavy = helper_models["heavy"]
    graph = graphpack.pack(heavy, tmp_path / "pack", seed=7)
    assert graph.stat().st_size < heavy.stat().st_size / 20  # the 1 MiB weight stayed behind
    (entry,) = graphpack.read_manifest(graph)["tensors"]
    real = numpy_helper.to_array(onnx.load(str(heavy)).graph.initializer[0])
    assert (entry["name"], entry["dtype"], entry["shape"]) == ("w", "float32", [512, 512])
    assert entry["std"] == pytest.approx(real.std(), rel=1e-6)
    first = graphpack.unpack(graph, tmp_path / "a")
    graphpack.unpack(graph, tmp_path / "b")
    data = (tmp_path / "a" / "heavy.weights").read_bytes()
    assert data == (tmp_path / "b" / "heavy.weights").read_bytes() and len(data) == real.nbytes
    drawn = np.frombuffer(data, dtype=np.float32)
    assert real.min() <= drawn.min() and drawn.max() <= real.max()
    assert drawn.std() == pytest.approx(real.std(), rel=0.15)  # normal(mean, std) clipped to [min, max]
    x = np.ones((2, 512), np.float32)
    session = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    expected = np.maximum(x @ drawn.reshape(512, 512), 0)
    for _ in range(3):
        expected = np.maximum(expected @ drawn.reshape(512, 512), 0)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-6)
    other = graphpack.pack(heavy, tmp_path / "other", seed=8)
    graphpack.unpack(other, tmp_path / "c")
    assert (tmp_path / "c" / "heavy.weights").read_bytes() != data


def test_integer_weights_are_regenerated_as_integers_within_their_range():
    entry = {"dtype": "int8", "shape": [1000], "mean": 0.0, "std": 60.0, "min": -127.0, "max": 127.0}
    drawn = graphpack.regenerate(entry, seed=0, index=3)
    assert drawn.dtype == np.int8 and drawn.min() >= -127 and 40 < drawn.std() < 60


def test_a_model_without_large_weights_is_not_packed(helper_models, tmp_path):
    with pytest.raises(UsageError, match="has no weight of 64 KiB or more"):
        graphpack.pack(helper_models["fixed"], tmp_path)


def test_the_committed_packs_are_the_full_alexnet_in_three_precisions(tmp_path):
    graphs = sorted(PACKS.glob("*.graph.onnx"))
    assert sorted(graphpack.read_manifest(g)["variant"] for g in graphs) == ["float16", "float32", "int8"]
    assert sum(p.stat().st_size for p in PACKS.iterdir()) < 1_000_000  # far under a 64 MiB transfer
    float32 = PACKS / "alexnet.graph.onnx"
    assert graphpack.read_manifest(float32)["bytes"] > 80_000_000
    model = graphpack.unpack(float32, tmp_path)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    probabilities = session.run(None, {"images": images})[0]
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_the_cpu_half_of_the_script_writes_one_json_and_a_table(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([str(ROOT / "scripts" / "gpu-check.sh"), "--cpu-only", "--batches", "1,2", "--min-time",
                           "0.02", "--min-iterations", "2", "--json", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = results.load(out)
    assert result.kind == "gpucheck"
    assert [(r.label, r.batch) for r in result.rows] == [(f"{v} cpu", b) for v in ("float32", "float16", "int8")
                                                         for b in (1, 2)]
    for row in result.rows:
        assert row.device_times is None and row.resources.load_seconds > 0 and row.resources.first_run_ms > 0
    assert {c.passed for c in result.checks} == {None} and len(result.checks) == 10
    assert "float16 faster than float32 on CUDA at batch 2  not run" in done.stdout
    assert "int8 cpu          2" in done.stdout


def test_bad_batches_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(UsageError, match="--batches '1,x' is not a comma-separated list"):
        gpucheck.main([str(PACKS), "--json", str(tmp_path / "r.json"), "--batches", "1,x"])
    assert not (tmp_path / "r.json").exists()


def _cuda_row(label: str, seconds: float) -> Row:
    return Row.from_times(label=label, engine="onnxruntime", model="m.onnx", batch=256,
                          providers=["CUDAExecutionProvider"], times_s=[seconds, seconds])


def test_the_float16_check_is_the_throughput_ratio():
    check = gpucheck.speedup_check([_cuda_row("float32 cuda", 0.2), _cuda_row("float16 cuda", 0.1)], 256)
    assert check.passed and check.value == pytest.approx(2.0)
    assert gpucheck.speedup_check([_cuda_row("float32 cuda", 0.1), _cuda_row("float16 cuda", 0.2)], 256).passed is False
    assert gpucheck.speedup_check([_cuda_row("float32 cuda", 0.1)], 256).passed is None
    assert gpucheck.relative_difference(np.array([1.0, -4.0]), np.array([1.0, -2.0])) == 1.0


def _engines(variant: str, tmp_path) -> tuple[OnnxEngine, OnnxEngine]:
    name = "alexnet.graph.onnx" if variant == "float32" else f"alexnet.{variant}.graph.onnx"
    model = graphpack.unpack(PACKS / name, tmp_path)
    return (OnnxEngine(create_session(model, SessionConfig(providers=("cpu",)))),
            OnnxEngine(create_session(model, SessionConfig(providers=("cuda",), strict=True))))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="onnxruntime's CUDA provider is not usable here")
@pytest.mark.parametrize("variant", ["float32", "float16", "int8"])
def test_cuda_outputs_equal_cpu_outputs_and_io_binding_equals_a_plain_run(variant, tmp_path):
    cpu, cuda = _engines(variant, tmp_path)
    feed = InputConfig(seed=1).feeds(cpu.specs, 16)[0]
    expected = cpu.session.session.run(None, feed)[0]
    plain = cuda.session.session.run(None, feed)[0]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(plain, expected, rtol=0, atol=gpucheck.TOLERANCES[variant] * scale)
    bound_session = create_session(cuda.model_path, SessionConfig(providers=("cuda",), outputs="device", strict=True))
    binding = bound_session.bind(feed)
    bound_session.session.run_with_iobinding(binding)
    assert binding.get_outputs()[0].device_name().lower() == "cuda"  # left in GPU memory until copied
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], plain, rtol=0,
                               atol=gpucheck.IO_BINDING_TOLERANCE * scale)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="onnxruntime's CUDA provider is not usable here")
def test_cuda_rows_of_both_precisions_carry_where_the_time_went(tmp_path):
    """Whether float16 is faster on CUDA is the GPU check's verdict (`python -m bench.gpucheck`, a benchmark; its
    rule: test_the_float16_check_is_the_throughput_ratio), not a test's: timings are never asserted."""
    run = RunConfig(warmup=1, min_time=0.1, min_iterations=3)
    for variant in ("float32", "float16"):
        _, cuda = _engines(variant, tmp_path / variant)
        row = measure_engine(cuda, batch=256, inputs=InputConfig(), run=run)
        assert row.providers[0] == "CUDAExecutionProvider" and row.batch == 256
        assert row.device_times is not None and row.device_times.means_ms[1] > 0
        assert row.device_times.input_bytes == 256 * 28 * 28


def test_a_failed_check_fails_the_run_after_the_json_is_written(tmp_path, monkeypatch):
    failed = results.BenchResult(kind="gpucheck", config={}, environment={}, checks=(
        results.Check("int8: CUDA = CPU", False, 0.2, 0.05), results.Check("float32: CUDA = CPU", True, 1e-4, 1e-3)))
    monkeypatch.setattr(gpucheck, "run_check", lambda *args: failed)
    with pytest.raises(CheckFailed, match=r"1 check\(s\) failed: int8: CUDA = CPU"):
        gpucheck.main([str(PACKS), "--json", str(tmp_path / "r.json")])
    assert results.load(tmp_path / "r.json").checks == failed.checks
