"""Engines: inputs prepared once per batch, one batch per step, what ran where, the Keras layout."""
import numpy as np
import pytest

from bench import session as session_lib
from bench.engines import OnnxEngine, TensorFlowEngine, cycling_step, split_loop, to_keras_layout
from bench.inputs import InputConfig, InputSpec
from bench.session import SessionConfig
from toolkit.cli import UsageError

CUDA = session_lib.cuda_usable()
MULTI_INPUTS = InputConfig(dims=(("seq", 3),), shapes=(("scale", (1,)),), distinct=2)


def test_onnx_engine_prepares_runs_and_records(helper_models):
    engine = OnnxEngine.open(helper_models["multi"], SessionConfig(intra_op_threads=1))
    prepared = engine.prepare(4, MULTI_INPUTS)
    assert prepared.samples == 4 and len(prepared.feeds) == 2
    np.testing.assert_array_equal(prepared.feeds[1]["ids"], MULTI_INPUTS.feeds(engine.specs, 4)[1]["ids"])
    score, mean = engine.step(prepared)()
    assert score.shape == (4,) and mean.shape == (4,)
    record = engine.record()
    assert (record.engine, record.model, record.outputs) == ("onnxruntime", str(helper_models["multi"]),
                                                             ("score", "mean"))
    assert [s.name for s in record.inputs] == ["images", "ids", "scale"]
    assert (record.requested_providers, record.providers, record.fallback) == (
        ("cpu",), ("CPUExecutionProvider",), None)
    assert record.runtime["intra_op_threads"] == 1 and record.runtime["io_binding"] is False


def test_step_cycles_through_the_prepared_feeds():
    seen = []
    step = cycling_step(seen.append, ["a", "b", "c"])
    for _ in range(7):
        step()
    assert seen == ["a", "b", "c", "a", "b", "c", "a"]


def test_io_binding_on_cpu_runs_the_model(helper_models):
    engine = OnnxEngine.open(helper_models["multi"], SessionConfig(io_binding="on"))
    binding = engine.prepare(4, MULTI_INPUTS).feeds[0]
    engine.runner()(binding)
    plain = engine.session.session.run(["score"], MULTI_INPUTS.feeds(engine.specs, 4)[0])[0]
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], plain, rtol=1e-6)
    assert engine.record().runtime["io_binding"] is True


def test_the_device_time_split_times_each_step_of_real_runs(helper_models):
    engine = OnnxEngine.open(helper_models["heavy"], SessionConfig())
    prepared = engine.prepare(16, InputConfig(distinct=1))
    assert engine.device_times(prepared) is None  # on the CPU there is nothing to copy
    split = engine.split(prepared.arrays[0], "cpu", runs=3)  # the GPU's code path, with CPU memory
    assert split.runs == 3 and split.input_bytes == split.output_bytes == 16 * 512 * 4
    assert all(ms > 0 for ms in split.means_ms) and split.method.startswith("onnxruntime: OrtValue")


def test_split_loop_keeps_each_steps_time_after_an_unkept_first_run():
    calls = []
    h2d, compute, d2h = split_loop(lambda: calls.append("in") or 1, lambda x: calls.append("run") or x + 1,
                                   lambda y: calls.append(f"out {y}"), runs=2)
    assert calls == ["in", "run", "out 2"] * 3 and len(h2d) == len(compute) == len(d2h) == 2


def test_outputs_on_the_device_fall_back_to_host_memory_on_the_cpu(helper_models):
    engine = OnnxEngine.open(helper_models["multi"], SessionConfig(outputs="device", io_binding="on"))
    binding = engine.prepare(4, MULTI_INPUTS).feeds[0]
    engine.runner()(binding)
    assert binding.get_outputs()[0].device_name().lower() == "cpu" and engine.record().runtime["outputs"] == "device"


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="onnxruntime's CUDA provider is not usable here")
def test_cuda_engine_runs_on_cuda_with_io_binding(helper_models):
    engine = OnnxEngine.open(helper_models["multi"], SessionConfig(providers=("cuda",), strict=True))
    assert engine.providers[0] == "CUDAExecutionProvider" and engine.fallback is None
    assert engine.record().runtime["io_binding"] is True
    engine.step(engine.prepare(8, MULTI_INPUTS))()


def test_keras_layout_transposes_an_nchw_feed_back():
    nhwc = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    assert to_keras_layout(nhwc, (None, 4, 5, 3)) is nhwc
    np.testing.assert_array_equal(to_keras_layout(nhwc.transpose(0, 3, 1, 2), (None, 4, 5, 3)), nhwc)
    with pytest.raises(UsageError, match=r"does not fit the Keras model's input \[None, 4, 5, 1\]"):
        to_keras_layout(nhwc, (None, 4, 5, 1))


@pytest.mark.slow
def test_tensorflow_engine_runs_a_keras_file_on_the_onnx_models_samples(tmp_path):
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4, 5, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    model.save(path)
    signature = (InputSpec("images", "tensor(float)", ("batch", 3, 4, 5)),)  # as an NCHW export's input
    engine = TensorFlowEngine(path, signature)
    inputs = InputConfig(distinct=2)
    prepared = engine.prepare(2, inputs)
    assert prepared.samples == 2
    np.testing.assert_array_equal(prepared.feeds[1][0], inputs.feeds(signature, 2)[1]["images"].transpose(0, 2, 3, 1))
    np.testing.assert_allclose(engine.step(prepared)(), model(prepared.feeds[0][0]).numpy(), rtol=1e-5)
    record = engine.record()
    assert (record.engine, record.model, record.requested_providers) == ("tensorflow", str(path), ())
    assert record.providers[0].startswith("TensorFlow ") and record.runtime["version"] == tf.__version__
    assert record.runtime["outputs"] == "host" and record.runtime["memory_growth"] == []  # no GPU here
    assert engine.device_times(prepared) is None
    split = engine.split(prepared.feeds[0], "/CPU:0", runs=2)  # the GPU's code path, on the CPU
    assert split.runs == 2 and split.input_bytes == 2 * 60 * 4 and split.output_bytes == 2 * 2 * 4
    on_device = TensorFlowEngine(path, signature, outputs="device")
    kept = on_device.step(on_device.prepare(2, inputs))()
    assert isinstance(kept, tf.Tensor)  # left where it was computed, not copied into numpy
    with pytest.raises(UsageError, match="takes 1 input"):
        TensorFlowEngine(path, signature * 2)
