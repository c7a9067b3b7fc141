"""The run contract: where every artifact of a run lives, and what summary.json holds.

A training run's output directory is the unit every package passes around. `RunDir` is the
only place that names its files; `TrainSummary` (with `EpochRecord`, `RankRecord`, ...) is the
only reader and writer of summary.json: typed, versioned like bench results (schema +
version), refused with one line when it is from a newer version or malformed.

    run = RunDir("runs/alexnet")
    run.model, run.summary, run.checkpoint, run.onnx, run.variant("int8"), run.bench("sweep")
    summary = run.read_summary()            # TrainSummary
    summary.test_accuracy, summary.dataset, summary.epochs[-1].val_accuracy
    RunDir.of("runs/alexnet/alexnet.onnx")  # the run a file belongs to

summary.json (schema "alexnet-toolkit/train-summary", version 1):
    {"schema", "version", "created", "test_accuracy", "test_loss", "test_images", "world_size",
     "precision", "allreduce", "parameters", "steps_per_epoch", "images_trained",
     "throughput": {"images_per_second" (total over ranks), "interval_images_per_second": [...],
                    "warmup_steps", "log_every", "global_batch"},
     "epochs": [{"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "images_per_second", "seconds", "resumed_at_step"}],
     "ranks": [{"rank", "hostname", "device", "images", "indices_sha256_63", "first_index",
                "weights_sha256_63"}],
     "class_names": [...], "input": {"shape", "dtype", "preprocessing"},
     "config": {every training option, resolved}, "environment": {host, CPU, GPUs, versions}}
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import typing
from pathlib import Path
from typing import Any

from toolkit.cli import UsageError
from toolkit.files import read_json, schema_version, write_json_atomic

SUMMARY_SCHEMA = "alexnet-toolkit/train-summary"
SUMMARY_VERSION = 1
VARIANTS = ("float16", "int8")


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _from_json(cls, obj: Any):
    """Build dataclass `cls` from its JSON form: nested dataclasses and tuples of them included."""
    if not isinstance(obj, dict):
        raise TypeError(f"{cls.__name__} must be a JSON object, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f.name)
            continue
        values[f.name] = _value(hints[f.name], obj[f.name])
    return cls(**values)


def _value(hint, value):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _from_json(hint, value)
    if origin is tuple:
        item = args[0]
        return tuple(_value(item, v) for v in value)
    return value


def to_json(obj) -> dict[str, Any]:
    """A dataclass as plain JSON values (tuples become lists when dumped)."""
    return dataclasses.asdict(obj)


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch as the chief logged it: metrics summed exactly over ranks."""

    epoch: int                       # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    images_per_second: float         # over all ranks, this epoch's training steps only
    seconds: float
    resumed_at_step: int | None = None


@dataclasses.dataclass(frozen=True)
class RankRecord:
    """Where one rank ran and what it held: its shard of the training set, its final weights."""

    rank: int
    hostname: str
    device: str                      # e.g. "CPU" or "GPU:0 (NVIDIA H100 80GB HBM3)"
    images: int                      # training images in its shard
    indices_sha256_63: int           # digest of its shard's indices (disjointness is checkable)
    first_index: int
    weights_sha256_63: int           # digest of its trainable weights at the end: equal iff bit-identical


@dataclasses.dataclass(frozen=True)
class TrainThroughput:
    """Training images/s over all ranks, measured after warm-up in intervals of `log_every` steps."""

    images_per_second: float | None  # None: too few steps after warm-up to measure
    interval_images_per_second: tuple[float, ...]
    warmup_steps: int
    log_every: int
    global_batch: int

    def per_rank(self, world_size: int) -> float | None:
        return None if self.images_per_second is None else self.images_per_second / world_size


@dataclasses.dataclass(frozen=True)
class ModelInput:
    shape: tuple[int | None, ...]
    dtype: str
    preprocessing: str


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """summary.json: the result of a training run (see the module docstring for the JSON)."""

    test_accuracy: float
    test_loss: float
    test_images: int
    world_size: int
    precision: str                   # the resolved Keras policy, e.g. mixed_bfloat16
    allreduce: str                   # how gradients crossed ranks: "gloo", "nccl", "mpi" or "none"
    parameters: int
    steps_per_epoch: int
    images_trained: int
    throughput: TrainThroughput
    epochs: tuple[EpochRecord, ...]
    ranks: tuple[RankRecord, ...]
    class_names: tuple[str, ...]
    input: ModelInput
    config: dict[str, Any]
    environment: dict[str, Any]
    created: str = dataclasses.field(default_factory=now_utc)

    @property
    def dataset(self) -> str | None:
        return self.config.get("dataset")

    @property
    def batch_size(self) -> int:
        """Per rank."""
        return int(self.config["batch_size"])

    @property
    def images_per_second(self) -> float | None:
        return self.throughput.images_per_second

    def to_json(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA, "version": SUMMARY_VERSION, **to_json(self)}

    @classmethod
    def from_json(cls, doc: Any, source: str = "summary") -> "TrainSummary":
        fix = "re-run the training job that wrote it with this version"
        schema_version(doc, SUMMARY_SCHEMA, SUMMARY_VERSION, source, "training summary", fix)
        try:
            return _from_json(cls, {k: v for k, v in doc.items() if k not in ("schema", "version")})
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source} is a malformed training summary ({type(exc).__name__}: {exc}): {fix}") from None


def variant_path(onnx_path: str | os.PathLike, variant: str) -> Path:
    """alexnet.onnx -> alexnet.float16.onnx: where the export writes a variant of a model."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.{variant}{path.suffix or '.onnx'}")


def export_record_path(onnx_path: str | os.PathLike) -> Path:
    """alexnet.onnx -> alexnet.onnx.json: the export's record (settings, machine, every comparison)."""
    path = Path(onnx_path)
    return path.with_name(path.name + ".json")


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run's output directory; every artifact's name is decided here and nowhere else."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, artifact: str | os.PathLike) -> "RunDir":
        """The run a file (model.keras, alexnet.onnx, ...) belongs to: its directory."""
        return cls(Path(artifact).parent)

    # ---- training
    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.npz"

    @property
    def samples(self) -> Path:
        return self.root / "samples.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    # ---- export
    @property
    def onnx(self) -> Path:
        return self.root / "alexnet.onnx"

    def variant(self, variant: str) -> Path:
        return variant_path(self.onnx, variant)

    @property
    def export_record(self) -> Path:
        return export_record_path(self.onnx)

    # ---- benchmarks and the report
    def bench(self, name: str) -> Path:
        return self.root / f"bench-{name}.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    # ---- reading and writing the summary
    def read_summary(self) -> TrainSummary:
        fix = "train first (python -m alexnet.train --output-dir DIR) or pass the run directory it wrote"
        return TrainSummary.from_json(read_json(self.summary, "training summary", fix), str(self.summary))

    def summary_if_any(self) -> TrainSummary | None:
        """The summary when there is a readable one (a model file may travel without its run)."""
        if not self.summary.is_file():
            return None
        try:
            return self.read_summary()
        except UsageError:
            return None

    def write_summary(self, summary: TrainSummary) -> None:
        write_json_atomic(self.summary, summary.to_json())
