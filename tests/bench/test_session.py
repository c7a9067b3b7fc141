"""onnxruntime sessions: honest provider reporting, clean errors for bad models, thread and graph options.

The fallback logic is tested on every machine with a stand-in for onnxruntime's provider outcome; the tests
of a real fallback run where CUDA is not usable, a real CUDA session's where it is (tests/bench/test_engines.py).
"""
import os

import numpy as np
import onnx
import pytest

from bench import session as session_lib
from bench.engines import OnnxEngine
from bench.session import SessionConfig, open_session
from toolkit import environment
from toolkit.cli import CheckFailed, UsageError

CUDA = session_lib.cuda_usable()


@pytest.mark.skipif(CUDA, reason="CUDA really works here: no fallback to observe")
def test_cuda_request_reports_cpu_fallback_in_one_line(helper_models, capfd):
    bs = open_session(helper_models["fixed"], SessionConfig(providers=("cuda",)))
    assert bs.providers == ("CPUExecutionProvider",)
    assert bs.fallback.startswith("CUDA unavailable, ran on CPU")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # onnxruntime's own error log was captured, not shown


@pytest.mark.skipif(CUDA, reason="CUDA really works here: no fallback to observe")
def test_strict_refuses_to_fall_back(helper_models, capfd):
    with pytest.raises(CheckFailed, match="TensorRT/CUDA unavailable, ran on CPU .*--strict"):
        open_session(helper_models["fixed"], SessionConfig(providers=("tensorrt", "cuda"), strict=True))
    assert capfd.readouterr() == ("", "")


# What onnxruntime-gpu logs where CUDA's libraries are missing (then it runs on the CPU without a word).
MISSING_CUBLAS = (b"[E:onnxruntime:Default, provider_bridge_ort.cc:2195 TryGetProviderInfo_CUDA] Failed to load "
                  b"library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object "
                  b"file: No such file or directory\n")


@pytest.fixture
def stand_in_runtime(monkeypatch):
    """onnxruntime's provider outcome, chosen by the test on any machine, GPU or not: `runs_on(providers, log)`
    makes every session claim to run on `providers` (a real CPU session underneath) after writing `log` to
    fd 2, as onnxruntime's C++ logger does; `available(providers)` is what onnxruntime says it was built with.
    Returns the calls of preload_cuda."""
    import onnxruntime as ort

    real = ort.InferenceSession
    outcome = {"providers": ["CPUExecutionProvider"], "log": b""}

    class StandInSession:
        def __init__(self, path, sess_options=None, providers=None, provider_options=None):
            os.write(2, outcome["log"])
            self.requested = providers
            self._session = real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return list(outcome["providers"])

        def __getattr__(self, name):
            return getattr(self._session, name)

    preloads = []
    monkeypatch.setattr(ort, "InferenceSession", StandInSession)
    monkeypatch.setattr(session_lib, "preload_cuda", lambda: preloads.append(1))

    def runs_on(providers, log=b""):
        outcome.update(providers=providers, log=log)

    def available(providers):
        monkeypatch.setattr(ort, "get_available_providers", lambda: list(providers))
    return runs_on, available, preloads


def test_a_provider_that_did_not_come_up_is_reported_with_its_reason_on_any_machine(helper_models, stand_in_runtime,
                                                                                  capfd):
    """The fallback logic without the machine deciding which path it takes: CUDA missing a library, TensorRT
    missing while CUDA came up, and everything there."""
    runs_on, _, preloads = stand_in_runtime
    runs_on(["CPUExecutionProvider"], MISSING_CUBLAS)
    cpu = open_session(helper_models["fixed"], SessionConfig(providers=("cuda",)))
    assert cpu.providers == ("CPUExecutionProvider",) and not cpu.on_gpu and not cpu.io_binding
    assert cpu.fallback == "CUDA unavailable, ran on CPU (CUDA: libcublasLt.so.12 not found)"
    assert cpu.session.requested == ["CUDAExecutionProvider", "CPUExecutionProvider"] and preloads == [1]
    with pytest.raises(CheckFailed, match=r"^CUDA unavailable, ran on CPU .*; --strict refuses to run on another"):
        open_session(helper_models["fixed"], SessionConfig(providers=("cuda",), strict=True))
    runs_on(["CUDAExecutionProvider", "CPUExecutionProvider"], b"TensorRT EP could not be created: install TensorRT\n")
    cuda = open_session(helper_models["fixed"], SessionConfig(providers=("tensorrt",)))
    assert cuda.fallback == ("TensorRT unavailable, ran on CUDA+CPU (TensorRT: TensorRT libraries not found)")
    assert cuda.on_gpu and cuda.io_binding and cuda.session.requested[:2] == ["TensorrtExecutionProvider",
                                                                              "CUDAExecutionProvider"]
    runs_on(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert open_session(helper_models["fixed"], SessionConfig(providers=("cuda",), strict=True)).fallback is None
    # A CPU-only request never loads CUDA's libraries.
    before = len(preloads)
    runs_on(["CPUExecutionProvider"])
    assert open_session(helper_models["fixed"], SessionConfig()).fallback is None and len(preloads) == before
    assert capfd.readouterr() == ("", "")  # onnxruntime's log was captured, never shown


def test_an_engine_reports_what_its_session_really_runs_on(helper_models, stand_in_runtime):
    runs_on, _, _ = stand_in_runtime
    runs_on(["CPUExecutionProvider"], MISSING_CUBLAS)
    record = OnnxEngine.open(helper_models["fixed"], SessionConfig(providers=("cuda",))).record()
    assert (record.requested_providers, record.providers) == (("cuda",), ("CPUExecutionProvider",))
    assert record.fallback.startswith("CUDA unavailable, ran on CPU") and record.runtime["io_binding"] is False


def test_cuda_is_usable_only_where_a_session_really_runs_on_it(stand_in_runtime):
    """What decides whether `gpu` tests run: CUDA listed and a session that stays on it."""
    runs_on, available, _ = stand_in_runtime
    available(["CPUExecutionProvider"])
    assert not session_lib.cuda_usable()
    available(["CUDAExecutionProvider", "CPUExecutionProvider"])
    runs_on(["CPUExecutionProvider"], MISSING_CUBLAS)
    assert not session_lib.cuda_usable()  # listed, as onnxruntime-gpu always lists it, but fell back
    runs_on(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session_lib.cuda_usable()


def test_cuda_libraries_are_preloaded_once_per_process_and_silently(monkeypatch, capfd):
    import onnxruntime as ort

    calls = []

    def preload_dlls():
        calls.append(1)
        print("Failed to load libcudart.so.13")  # what onnxruntime-gpu prints for every library it cannot find
    monkeypatch.setattr(ort, "preload_dlls", preload_dlls, raising=False)
    environment.preload_cuda.cache_clear()
    try:
        environment.preload_cuda()
        environment.preload_cuda()
    finally:
        environment.preload_cuda.cache_clear()
    assert calls == [1] and capfd.readouterr() == ("", "")


def test_cpu_session_has_no_fallback_and_records_options(helper_models):
    import onnxruntime as ort

    config = SessionConfig(intra_op_threads=1, inter_op_threads=1, graph_optimization="basic",
                           execution_mode="parallel", entries=(("session.intra_op.allow_spinning", "0"),))
    options = config.session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    bs = open_session(helper_models["fixed"], config)
    assert bs.fallback is None and bs.providers == ("CPUExecutionProvider",)


def test_tensorrt_options_are_passed_and_fall_back_to_cuda_then_cpu(tmp_path):
    config = SessionConfig(providers=("tensorrt",), trt_fp16=True, trt_int8=True, trt_workspace_mb=512,
                           trt_cache_dir=str(tmp_path / "engines"), trt_timing_cache_dir=str(tmp_path / "timing"),
                           device_id=1)
    assert config.provider_list() == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True, "trt_int8_enable": True,
                                       "trt_max_workspace_size": 512 * 2**20, "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": str(tmp_path / "engines"),
                                       "trt_timing_cache_enable": True,
                                       "trt_timing_cache_path": str(tmp_path / "timing")}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        ("CPUExecutionProvider", {}),
    ]
    # Without caches or a workspace, TensorRT's own defaults: no key at all.
    assert SessionConfig(providers=("cpu", "tensorrt")).provider_list() == [
        ("CPUExecutionProvider", {}),
        ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": False, "trt_int8_enable": False}),
        ("CUDAExecutionProvider", {"device_id": 0})]
    assert config.uses_io_binding(("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert not config.uses_io_binding(("CPUExecutionProvider",))


def test_outputs_go_to_the_device_only_on_a_gpu_provider():
    device = SessionConfig(outputs="device")
    assert device.output_device(("CUDAExecutionProvider", "CPUExecutionProvider")) == "cuda"
    assert device.output_device(("TensorrtExecutionProvider", "CUDAExecutionProvider")) == "cuda"
    assert device.output_device(("CPUExecutionProvider",)) == "cpu"
    assert SessionConfig().output_device(("CUDAExecutionProvider",)) == "cpu"


def test_trt_int8_refuses_a_model_without_qdq_nodes(helper_models):
    with pytest.raises(UsageError, match="--trt-int8 needs a QDQ-quantized model .*fixed.onnx has none"):
        open_session(helper_models["fixed"], SessionConfig(providers=("tensorrt",), trt_int8=True))


@pytest.mark.parametrize("kwargs, message", [
    ({"providers": ("gpu",)}, "unknown provider gpu"),
    ({"intra_op_threads": -1}, "thread counts must be >= 0"),
    ({"graph_optimization": "max"}, "unknown graph optimisation level"),
    ({"io_binding": "yes"}, "unknown --io-binding"),
    ({"outputs": "gpu"}, "unknown --outputs 'gpu'"),
    ({"outputs": "device", "io_binding": "off"}, "--outputs device keeps outputs on the GPU .*drop --io-binding off"),
    ({"trt_workspace_mb": 0}, "--trt-workspace-mb 0 must be >= 1"),
])
def test_bad_session_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        SessionConfig(**kwargs)


def test_provider_list_parsing():
    assert session_lib.parse_providers("CUDA, cpu") == ("cuda", "cpu")
    with pytest.raises(UsageError, match="choose from cpu, cuda, tensorrt"):
        session_lib.parse_providers(",")


def test_bad_model_files_are_usage_errors(tmp_path, helper_models):
    (tmp_path / "corrupt.onnx").write_bytes(helper_models["fixed"].read_bytes()[:40])
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    cases = {tmp_path / "missing.onnx": "does not exist", tmp_path / "corrupt.onnx": "not an ONNX model",
             tmp_path / "text.onnx": "not an ONNX model|holds no graph",
             helper_models["ir14"]: "Unsupported model IR version: 14"}
    for path, message in cases.items():
        with pytest.raises(UsageError, match=message):
            open_session(path, SessionConfig())


def test_external_data_outside_the_model_directory_is_refused(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    weights = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    onnx.external_data_helper.set_external_data(weights, location="../elsewhere.bin")
    weights.ClearField("raw_data")
    t = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g",
                                   [t("x", onnx.TensorProto.FLOAT, [2, 2])], [t("y", onnx.TensorProto.FLOAT, [2, 2])],
                                   initializer=[weights])
    path = model_dir / "m.onnx"
    path.write_bytes(onnx.helper.make_model(graph, ir_version=10).SerializeToString())
    with pytest.raises(UsageError, match="outside its own directory"):
        open_session(path, SessionConfig())


def test_defaults_use_every_usable_cpu_unpinned_and_without_spinning(monkeypatch):
    """The benchmark's defaults (see bench/session.py): explicit thread count, no spin-waiting."""
    monkeypatch.setattr(session_lib.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    config = SessionConfig()
    assert config.intra_op_threads == 3
    options = config.session_options()
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # 0 still asks for onnxruntime's own default
    assert SessionConfig(intra_op_threads=0).session_options().intra_op_num_threads == 0


def test_session_config_entries_override_and_extend_the_defaults():
    assert session_lib.with_default_entries({}) == session_lib.DEFAULT_ENTRIES
    merged = dict(session_lib.with_default_entries({"session.intra_op.allow_spinning": "1",
                                                    "session.set_denormal_as_zero": "1"}))
    assert merged == {"session.intra_op.allow_spinning": "1", "session.set_denormal_as_zero": "1"}
