"""onnxruntime sessions as the benchmark runs them: providers, fallback detection, threads, IO binding.

onnxruntime-gpu lists CUDA and TensorRT as "available" even where their libraries or the GPU
are missing; it then logs a screenful of errors and silently runs on the CPU (also where the CUDA
libraries are installed but not yet loaded: `preload_cuda` loads them before any GPU session). So
the session is created with its log captured, and the providers it *really* runs on are read back
with `session.get_providers()`: a requested provider that did not make it is reported in one line
("CUDA unavailable, ran on CPU"), or refused with `strict=True`, never printed under its label.
TensorRT falls back to CUDA, then to the CPU; its options (float16, int8 for QDQ models, workspace,
engine and timing caches) are `SessionConfig` fields.

    from bench.session import SessionConfig, open_session
    bs = open_session("runs/alexnet/alexnet.onnx", SessionConfig(providers=("cuda",)))
    bs.providers, bs.fallback

onnxruntime is imported only when a session is made: option names stay strings until then, so
`bench --help` and `bench report` never load it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from toolkit.cli import CheckFailed, UsageError, short_error
from toolkit.constants import PROVIDERS, SHORT_NAMES
from toolkit.environment import THREADS_PER_CPU, preload_cuda, thread_limit, usable_cpus

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort

# Option value -> the name of onnxruntime's enum member (ort.GraphOptimizationLevel, ort.ExecutionMode).
GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                      "all": "ORT_ENABLE_ALL"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
IO_BINDING = ("auto", "on", "off")
# Where a run's outputs end up: copied to the host (what a caller reads), or left where the session computed them
# (GPU memory on CUDA/TensorRT, through IO binding). `bench compare` holds TensorFlow to the same.
OUTPUTS = ("host", "device")
_QUIET = 3  # onnxruntime log severity: 3 = ERROR; warnings about node placement are noise here


def parse_providers(text: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PROVIDERS]
    if unknown or not names:
        what = f"unknown provider {', '.join(unknown)}" if unknown else f"no provider in {text!r}"
        raise UsageError(f"{what}: choose from {', '.join(PROVIDERS)} (comma-separated, in order of preference)")
    return names


# The benchmark's session defaults, and why (measured on a shared 2-vCPU KVM guest, AlexNet 227 px,
# onnxruntime 1.31; README "onnxruntime vs TensorFlow"):
#   * intra-op threads: one per usable logical CPU, given explicitly. onnxruntime's own default (0)
#     is one thread per physical core *pinned* to its core; pinned threads cannot move away from a
#     busy neighbour, and on a shared machine that cost 30-80% at batch 1. TensorFlow, the
#     baseline, also uses every logical CPU (its default); 0 still asks for onnxruntime's default.
#   * no spin-waiting: idle intra-op threads sleep instead of burning the CPU that the thread with
#     work (or anything else on the machine) needs. Turn it back on with
#     --session-config session.intra_op.allow_spinning=1.
DEFAULT_ENTRIES: tuple[tuple[str, str], ...] = (("session.intra_op.allow_spinning", "0"),)


def with_default_entries(entries: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """DEFAULT_ENTRIES, overridden and extended by `entries` (what --session-config gives)."""
    merged = dict(DEFAULT_ENTRIES)
    merged.update(entries)
    return tuple(merged.items())


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """Every onnxruntime knob the benchmark exposes; recorded verbatim in the result's config."""

    providers: tuple[str, ...] = ("cpu",)
    strict: bool = False
    # One per usable logical CPU (see DEFAULT_ENTRIES' comment); 0: onnxruntime's default (one per
    # physical core, pinned).
    intra_op_threads: int = dataclasses.field(default_factory=usable_cpus)
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    execution_mode: str = "sequential"
    io_binding: str = "auto"  # auto: on for CUDA/TensorRT (inputs copied in per run, outputs bound per `outputs`)
    outputs: str = "host"     # host: every run's outputs copied to the host; device: left in GPU memory
    device_id: int = 0
    # TensorRT: float16 and int8 kernels (int8 for QDQ models: TensorRT takes the scales from their Q/DQ nodes),
    # the builder's workspace, and caches of built engines and of kernel timings, reused across runs.
    trt_fp16: bool = False
    trt_int8: bool = False
    trt_workspace_mb: int | None = None  # None: TensorRT's default (the GPU's memory)
    trt_cache_dir: str | None = None
    trt_timing_cache_dir: str | None = None
    # onnxruntime session config entries, e.g. ("session.intra_op.allow_spinning", "1")
    entries: tuple[tuple[str, str], ...] = DEFAULT_ENTRIES
    force: bool = False       # start more threads than toolkit.environment.thread_limit() allows

    def __post_init__(self):
        parse_providers(",".join(self.providers))
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise UsageError("thread counts must be >= 0 (0 = onnxruntime's default): fix --intra-op-threads/"
                             "--inter-op-threads")
        most = max(self.intra_op_threads, self.inter_op_threads)
        if most > thread_limit() and not self.force:
            raise UsageError(f"{most} threads per pool is more than {THREADS_PER_CPU} per usable CPU ({thread_limit()} "
                             "here): lower --intra-op-threads/--inter-op-threads (or the settings file's), or pass "
                             "--force to start them anyway")
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise UsageError(f"unknown graph optimisation level {self.graph_optimization!r}: choose from "
                             f"{', '.join(GRAPH_OPTIMIZATION)}")
        if self.execution_mode not in EXECUTION_MODES:
            raise UsageError(f"unknown execution mode {self.execution_mode!r}: choose from "
                             f"{', '.join(EXECUTION_MODES)}")
        if self.io_binding not in IO_BINDING:
            raise UsageError(f"unknown --io-binding {self.io_binding!r}: choose from {', '.join(IO_BINDING)}")
        if self.outputs not in OUTPUTS:
            raise UsageError(f"unknown --outputs {self.outputs!r}: choose from {', '.join(OUTPUTS)}")
        if self.outputs == "device" and self.io_binding == "off":
            raise UsageError("--outputs device keeps outputs on the GPU through IO binding: drop --io-binding off")
        if self.trt_workspace_mb is not None and self.trt_workspace_mb < 1:
            raise UsageError(f"--trt-workspace-mb {self.trt_workspace_mb} must be >= 1")
        if self.device_id < 0:
            raise UsageError("--device-id must be >= 0")

    def session_options(self, profile_prefix: str | None = None) -> ort.SessionOptions:
        """`profile_prefix`: onnxruntime's profiler on, writing its trace to PREFIX_DATE.json (bench/profile.py)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   GRAPH_OPTIMIZATION[self.graph_optimization])
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[self.execution_mode])
        options.log_severity_level = _QUIET
        for key, value in self.entries:
            options.add_session_config_entry(key, value)
        return options

    def tensorrt_options(self) -> dict[str, Any]:
        trt: dict[str, Any] = {"device_id": self.device_id, "trt_fp16_enable": self.trt_fp16,
                               "trt_int8_enable": self.trt_int8}
        if self.trt_workspace_mb is not None:
            trt["trt_max_workspace_size"] = self.trt_workspace_mb * 2**20
        if self.trt_cache_dir:
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=self.trt_cache_dir)
        if self.trt_timing_cache_dir:
            trt.update(trt_timing_cache_enable=True, trt_timing_cache_path=self.trt_timing_cache_dir)
        return trt

    def provider_list(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, options) in preference order. TensorRT is followed by CUDA (the nodes TensorRT does not take,
        and the whole model where TensorRT is missing), CPU comes last: onnxruntime falls back along the list."""
        shorts = list(self.providers)
        if "tensorrt" in shorts and "cuda" not in shorts:
            shorts.insert(shorts.index("tensorrt") + 1, "cuda")
        if "cpu" not in shorts:
            shorts.append("cpu")
        options = {"cuda": lambda: {"device_id": self.device_id}, "tensorrt": self.tensorrt_options, "cpu": dict}
        return [(PROVIDERS[short], options[short]()) for short in shorts]

    def uses_io_binding(self, providers: tuple[str, ...]) -> bool:
        return self.io_binding == "on" or (self.io_binding == "auto" and on_gpu(providers))

    def output_device(self, providers: tuple[str, ...]) -> str:
        """Where IO binding puts the outputs: the GPU with --outputs device on a GPU provider, else the host."""
        return "cuda" if self.outputs == "device" and on_gpu(providers) else "cpu"


def on_gpu(providers: tuple[str, ...]) -> bool:
    """Whether a session with these providers (what it really runs on, in order) computes on the GPU."""
    return bool(providers) and providers[0] in (PROVIDERS["cuda"], PROVIDERS["tensorrt"])


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Capture everything written to fds 1 and 2 (C++ logs and onnxruntime's Python prints alike)."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    printed = io.StringIO()  # Python-level prints, where sys.stdout is not fd 1 (pytest, notebooks)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                yield lines
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())
            lines.extend(printed.getvalue().splitlines())


_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file")


def unavailable_reason(log: list[str], provider: str) -> str:
    """The one useful fact in onnxruntime's fallback log: which library was missing."""
    marker = "tensorrt" if provider == PROVIDERS["tensorrt"] else "cuda"
    for line in log:
        if f"providers_{marker}" in line or (marker == "tensorrt" and "TensorRT" in line):
            found = _MISSING_LIBRARY.search(line)
            if found:
                return f"{found.group(1)} not found"
            if "install TensorRT" in line:
                return "TensorRT libraries not found"
    return "provider could not be created"


@dataclasses.dataclass
class BenchSession:
    """A created session plus what it really runs on."""

    session: ort.InferenceSession
    config: SessionConfig
    providers: tuple[str, ...]
    fallback: str | None
    model_path: Path
    create_seconds: float  # onnxruntime's session creation (graph optimisation included): its cold start

    @property
    def io_binding(self) -> bool:
        return self.config.uses_io_binding(self.providers)

    @property
    def on_gpu(self) -> bool:
        return on_gpu(self.providers)

    def bind(self, feed: Mapping[str, np.ndarray]) -> ort.IOBinding:
        """Inputs copied in from host arrays on every run, as a serving process receives them; outputs bound
        where `config.outputs` says (host: copied back by the run itself)."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        device = self.config.output_device(self.providers)
        for out in self.session.get_outputs():
            binding.bind_output(out.name, device, self.config.device_id)
        return binding


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def open_session(model_path: str | os.PathLike, config: SessionConfig,
                 profile_prefix: str | None = None) -> BenchSession:
    """A session for a model file checked by toolkit.onnxfile (external data beside it, a graph in it)."""
    from toolkit.onnxfile import check_model_file, read_graph

    path = check_model_file(model_path)
    if config.trt_int8 and "tensorrt" in config.providers and not any(
            node.op_type in QDQ_OPS for node in read_graph(path).graph.node):
        raise UsageError(f"--trt-int8 needs a QDQ-quantized model (TensorRT takes the int8 scales from its "
                         f"QuantizeLinear/DequantizeLinear nodes) and {path} has none: pass the export's int8 "
                         "variant, e.g. alexnet.int8.onnx")
    return create_session(path, config, profile_prefix)


def create_session(path: Path, config: SessionConfig, profile_prefix: str | None = None) -> BenchSession:
    """A session for a model file already checked (`open_session`, or one the caller wrote itself): what it
    really runs on, the fallback and its reason, the creation time. Needs onnxruntime only, not onnx."""
    import onnxruntime as ort

    providers = config.provider_list()
    if any(name != PROVIDERS["cpu"] for name, _ in providers):
        preload_cuda()
    failure: Exception | None
    with captured_output() as log:
        start = time.perf_counter()
        try:
            session = ort.InferenceSession(str(path), sess_options=config.session_options(profile_prefix),
                                           providers=[n for n, _ in providers],
                                           provider_options=[o for _, o in providers])
        except Exception as exc:  # onnxruntime's pybind exceptions share no public base class
            failure = exc
        else:
            failure = None
    create_seconds = time.perf_counter() - start
    if failure is not None:
        raise UsageError(f"onnxruntime cannot load model {path}: {short_error(failure)}: "
                         "pass a model onnxruntime supports (check opset and IR version)")
    # Runs after creation stay quiet too; creation's log was captured above.
    ort.set_default_logger_severity(_QUIET)
    actual = tuple(session.get_providers())
    missing = [name for name, _ in providers if name not in actual]
    fallback = None
    if missing:
        ran_on = "+".join(SHORT_NAMES.get(p, p) for p in actual)
        reasons = "; ".join(f"{SHORT_NAMES[m]}: {unavailable_reason(log, m)}" for m in missing)
        fallback = f"{'/'.join(SHORT_NAMES[m] for m in missing)} unavailable, ran on {ran_on} ({reasons})"
        if config.strict:
            raise CheckFailed(f"{fallback}; --strict refuses to run on another provider")
    return BenchSession(session=session, config=config, providers=actual, fallback=fallback, model_path=path,
                        create_seconds=create_seconds)


def cuda_usable() -> bool:
    """True where a CUDA session really runs on CUDA (what `gpu` tests need), not merely listed."""
    import onnxruntime as ort

    if PROVIDERS["cuda"] not in ort.get_available_providers():
        return False
    preload_cuda()
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with captured_output():
        try:
            session = ort.InferenceSession(model.SerializeToString(), providers=[PROVIDERS["cuda"]])
        except Exception:
            return False
    return PROVIDERS["cuda"] in session.get_providers()
