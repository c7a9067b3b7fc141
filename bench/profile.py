"""Where the time goes: onnxruntime's per-node profile and, for `bench compare`, TensorFlow's.

    bench profile --model runs/alexnet/alexnet.onnx --batch 32 --top 15 --json profile.json
    bench compare --batch 1,32 --profile          # the same for every engine, TensorFlow included

onnxruntime: a session of its own with `SessionOptions.enable_profiling`, in a temporary directory;
its Chrome-trace JSON has one "Session" event `model_run` per run and one "Node" event
`NODE_kernel_time` per kernel execution, with `op_name` and `provider` in its args. The warm-up
runs are in the trace too and are left out: only the kernels from the first measured `model_run`
on count. Profiling costs a little per node, so these runs are slightly slower than
`bench throughput`'s.

TensorFlow: `tf.profiler.experimental` around the same kind of runs, its XSpace protobuf read
directly: the host plane's events named `NAME:OpType` are the executed TensorFlow ops (on CPU,
oneDNN's fused kernels such as `_MklNativeFusedConv2D`). TensorFlow runs independent ops on
several inter-op threads at once, so its kernel times may add up to more than the wall time. GPU
kernels are not parsed (TensorBoard's profiler shows them); on a GPU, TensorFlow has no profile here.

The margin: kernels add up to less than the measured wall time. The rest is the Python call and
input/output conversion outside the runtime (wall - onnxruntime's model_run), and the executor,
allocation and thread synchronisation inside it (model_run - kernels). Both are reported.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.engines import Engine, EngineRecord, OnnxEngine, Prepared, TensorFlowEngine
from bench.inputs import InputConfig, default_batch
from bench.resources import measure_with_resources
from bench.results import Kernel, Profile, Row
from bench.runner import RunConfig, Stage
from bench.session import SessionConfig

KERNEL_SUFFIX = "_kernel_time"


def onnxruntime_kernels(events: Sequence[dict[str, Any]], measured_runs: int) -> tuple[list[Kernel], float]:
    """The kernels of the last `measured_runs` runs of an onnxruntime trace, and those runs' model_run time in ms."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) < measured_runs or measured_runs < 1:
        raise ValueError(f"the trace holds {len(runs)} runs, not the {measured_runs} measured")
    measured = runs[len(runs) - measured_runs:]
    start = measured[0]["ts"]
    kernels = [Kernel(node=e["name"][:-len(KERNEL_SUFFIX)], op=e["args"]["op_name"], provider=e["args"]["provider"],
                      ms=e["dur"] / 1000)
               for e in events
               if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX) and e["ts"] >= start]
    return kernels, sum(r["dur"] for r in measured) / 1000


def profile_onnx(path: str | Path, session_config: SessionConfig, *, label: str, batch: int | None,
                 inputs: InputConfig, run: RunConfig,
                 progress: Stage | None = None) -> tuple[EngineRecord, Row, Profile]:
    """Measure `path` at `batch` (None: the model's fixed batch, else 1) in a profiling session of its
    own; the engine's record, the row, and where its time went. `progress(description, index, total, run)`
    (bench.report.MeasureProgress.step) announces the profiled runs once the batch size is known."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        engine = OnnxEngine.open(path, session_config, profile_prefix=str(Path(tmp) / "onnxruntime"))
        prepared = engine.prepare(batch or default_batch(engine.specs, 1, dict(inputs.shapes)), inputs)
        step = None if progress is None else progress(
            f"profile: {label} batch {prepared.samples}, {run.min_iterations} profiled runs", 0, 1, run)
        times, used = measure_with_resources(engine.step(prepared), run, load_seconds=engine.load_seconds,
                                             providers=engine.providers, progress=step)
        trace = Path(engine.session.session.end_profiling())
        kernels, runtime_ms = onnxruntime_kernels(json.loads(trace.read_text()), len(times))
    record = engine.record()
    found = Profile.from_kernels(kernels, label=label, engine=engine.name, batch=prepared.samples, runs=len(times),
                                 wall_ms=sum(times) * 1000, runtime_ms=runtime_ms, session_providers=engine.providers,
                                 overlapping=session_config.execution_mode == "parallel")
    return record, record.row(label, prepared.samples, times, used), found


def _xspace_kernels(data: bytes, provider: str) -> list[Kernel]:
    """TensorFlow ops from a serialised XSpace: host-plane events whose name is `NAME:OpType`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(data)
    kernels = []
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if meta.display_name and meta.name.endswith(":" + meta.display_name):
                    kernels.append(Kernel(node=meta.name.rsplit(":", 1)[0], op=meta.display_name,
                                          provider=provider, ms=event.duration_ps / 1e9))
    return kernels


def profile_tensorflow(engine: TensorFlowEngine, prepared: Prepared, *, label: str, runs: int) -> Profile | None:
    """TensorFlow's ops over `runs` runs of an engine that has run (traced and warm); None on a GPU."""
    if engine.providers[0] != "TensorFlow CPU":
        return None
    import tensorflow as tf

    step = engine.step(prepared)
    with tempfile.TemporaryDirectory(prefix="bench-tf-profile-") as tmp:
        tf.profiler.experimental.start(tmp)
        try:
            start = time.perf_counter()
            for _ in range(runs):
                step()
            wall = time.perf_counter() - start
        finally:
            tf.profiler.experimental.stop()
        kernels = [k for path in Path(tmp).rglob("*.xplane.pb")
                   for k in _xspace_kernels(path.read_bytes(), engine.providers[0])]
    if not kernels:
        return None
    return Profile.from_kernels(kernels, label=label, engine=engine.name, batch=prepared.samples, runs=runs,
                                wall_ms=wall * 1000, runtime_ms=None, session_providers=engine.providers,
                                overlapping=True)


def profiles_of(engine: Engine | None, path: Path, session_config: SessionConfig, *, label: str, batches: Iterable[int],
                inputs: InputConfig, run: RunConfig) -> list[Profile]:
    """`bench compare --profile`, in an engine's own process: its profile at each batch size.

    onnxruntime profiles in a new session (`engine`, the measured one, is not profiled: the
    profiler would have slowed its rounds); TensorFlow profiles `engine` itself.
    """
    found = []
    for batch in batches:
        if isinstance(engine, TensorFlowEngine):
            prepared = engine.prepare(batch, inputs)
            warm = engine.step(prepared)
            for _ in range(max(run.warmup, 1)):
                warm()
            profile = profile_tensorflow(engine, prepared, label=label, runs=run.min_iterations)
        else:
            profile = profile_onnx(path, session_config, label=label, batch=batch, inputs=inputs, run=run)[2]
        if profile is not None:
            found.append(profile)
    return found
