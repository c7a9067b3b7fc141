"""Profiles: onnxruntime's trace parsed and aggregated; the kernels fit inside the measured time, and their two views
(per operator type, per node) add up to the same kernels. How much of the time the kernels cover is a measured figure
(`bench profile` reports it); no test bounds it."""
import json

import pytest

from bench import profile
from bench.inputs import InputConfig
from bench.results import Kernel, Profile
from bench.runner import RunConfig
from bench.session import SessionConfig

RUN = RunConfig(warmup=2, min_time=0, min_iterations=20)


def _event(name, cat, ts, dur, **args):
    return {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X", "args": args}


def test_the_trace_parser_keeps_only_the_measured_runs():
    events = [_event("model_loading_uri", "Session", 0, 500),
              _event("a_kernel_time", "Node", 1000, 90, op_name="MatMul", provider="CPUExecutionProvider"),
              _event("model_run", "Session", 995, 100),   # a warm-up run
              *[e for start in (2000, 3000) for e in (
                  _event("a_kernel_time", "Node", start + 1, 60, op_name="MatMul", provider="CPUExecutionProvider"),
                  _event("a_fence_before", "Node", start + 1, 1, op_name="MatMul", provider="CPUExecutionProvider"),
                  _event("b_kernel_time", "Node", start + 70, 20, op_name="Relu", provider="CUDAExecutionProvider"),
                  _event("SequentialExecutor::Execute", "Session", start, 95),
                  _event("model_run", "Session", start, 100))]]
    kernels, runtime_ms = profile.onnxruntime_kernels(events, measured_runs=2)
    assert runtime_ms == 0.2
    assert kernels == [Kernel("a", "MatMul", "CPUExecutionProvider", 0.06),
                       Kernel("b", "Relu", "CUDAExecutionProvider", 0.02)] * 2
    with pytest.raises(ValueError, match="holds 3 runs, not the 4 measured"):
        profile.onnxruntime_kernels(events, measured_runs=4)


def _profile(kernels, providers=("CPUExecutionProvider",)) -> Profile:
    return Profile.from_kernels(kernels, label="m", engine="onnxruntime", batch=4, runs=2, wall_ms=10.0,
                                runtime_ms=9.0, session_providers=providers)


def test_kernels_are_summed_per_op_type_and_per_node():
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    kernels = [Kernel("conv1", "Conv", cuda, 3.0), Kernel("conv2", "Conv", cuda, 1.0), Kernel("relu", "Relu", cpu, 0.5),
               Kernel("conv1", "Conv", cuda, 3.0), Kernel("conv2", "Conv", cuda, 1.0), Kernel("relu", "Relu", cpu, 0.5)]
    found = _profile(kernels, (cuda, cpu))
    assert [(o.name, o.nodes, o.calls, o.total_ms, o.providers) for o in found.ops] == [
        ("Conv", 2, 4, 8.0, (cuda,)), ("Relu", 1, 2, 1.0, (cpu,))]
    assert [(n.name, n.total_ms) for n in found.nodes] == [("conv1", 6.0), ("conv2", 2.0), ("relu", 1.0)]
    assert found.kernel_ms == 9.0 and found.coverage == 0.9
    assert sum(found.share(o) for o in found.ops) == pytest.approx(1.0)
    assert found.share(found.ops[0]) == pytest.approx(8 / 9)
    assert found.nodes_by_provider == {cuda: 2, cpu: 1}
    assert found.cpu_fallback_nodes == 1
    assert _profile(kernels).cpu_fallback_nodes is None  # a CPU session has nothing to fall back from
    assert Profile.from_json(json.loads(json.dumps(found.to_json()))) == found


def test_operator_times_add_up_to_the_measured_time(helper_models):
    """A real model whose runs are kernels: the kernels' sum is never more than onnxruntime's own span of the
    runs, which is never more than the wall time; per operator type and per node are two sums of the same
    kernels; the MatMul chain's MatMuls lead."""
    _, row, found = profile.profile_onnx(helper_models["heavy"], SessionConfig(), label="heavy", batch=256,
                                         inputs=InputConfig(), run=RUN)
    assert found.runs == row.latency.count == 20 and found.wall_ms == pytest.approx(sum(row.times_ms))
    assert found.kernel_ms <= found.runtime_ms <= found.wall_ms
    assert sum(node.total_ms for node in found.nodes) == pytest.approx(found.kernel_ms)
    for op in found.ops:
        assert op.total_ms == pytest.approx(sum(node.total_ms for node in found.nodes if node.op == op.name))
        assert op.calls == sum(node.calls for node in found.nodes if node.op == op.name)
    assert found.ops[0].name == "MatMul"
    assert all(node.calls == found.runs for node in found.nodes)  # every node once per measured run, no warm-up
    assert found.nodes_by_provider == {"CPUExecutionProvider": len(found.nodes)}
    assert row.resources.first_run_ms > 0 and row.resources.load_seconds > 0


def test_a_tiny_model_shows_the_overhead_outside_its_kernels(helper_models):
    _, row, found = profile.profile_onnx(helper_models["multi"], SessionConfig(intra_op_threads=1), label="multi",
                                         batch=2, inputs=InputConfig(dims=(("seq", 3),), shapes=(("scale", (1,)),)),
                                         run=RUN)
    assert found.kernel_ms <= found.runtime_ms <= found.wall_ms
    assert {"ReduceMean", "Cast"} <= {o.name for o in found.ops}
    assert found.coverage < 1


@pytest.mark.slow
def test_tensorflow_ops_come_from_its_profiler(tmp_path):
    import keras

    from bench.engines import TensorFlowEngine
    from bench.inputs import InputSpec

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(8)])
    model.save(tmp_path / "model.keras")
    engine = TensorFlowEngine(tmp_path / "model.keras", (InputSpec("x", "tensor(float)", ("batch", 64)),))
    [found] = profile.profiles_of(engine, tmp_path / "model.keras", SessionConfig(), label="tf", batches=[16],
                                  inputs=InputConfig(), run=RunConfig(warmup=2, min_time=0, min_iterations=5))
    assert (found.label, found.engine, found.batch, found.runs, found.overlapping) == ("tf", "tensorflow", 16, 5, True)
    assert any("MatMul" in o.name for o in found.ops), [o.name for o in found.ops]
    assert found.nodes_by_provider == {"TensorFlow CPU": len(found.nodes)} and found.cpu_fallback_nodes is None
    assert 0 < found.kernel_ms
